"""worker/operations.py: an operation that breaks ends as a 500 (its worker's log has the
traceback); one that is not claimable is left alone."""

import pytest

from service.db import operations
from service.generation import generation_for
from service.settings import Settings
from service.vocabulary import OperationKind
from tests.conftest import database_url
from worker import operations as runner


@pytest.fixture
def settings(sessions) -> Settings:
    return Settings(database_url=database_url(sessions))


def accepted(sessions) -> int:
    with sessions() as session:
        request = {"model_id": 1, "body": {"dataset_id": 1}}
        return operations.create_operation(session, OperationKind.IMPORTANCE, request).id


def test_an_operation_that_breaks_ends_as_a_500_and_the_error_reaches_the_log(
    sessions, settings, monkeypatch
):
    def broken(*_args) -> dict:
        raise RuntimeError("a bug")

    monkeypatch.setitem(runner.RUNNERS, OperationKind.IMPORTANCE, broken)
    operation_id = accepted(sessions)
    with pytest.raises(RuntimeError, match="a bug"):
        runner.run_operation(sessions, operation_id, settings, generation_for(settings))
    with sessions() as session:
        row = operations.get_operation(session, operation_id)
    assert row.status == "failed" and row.error["status"] == 500
    assert "RuntimeError" in row.error["message"]


def test_a_deleted_model_ends_the_operation_with_a_404(sessions, settings):
    operation_id = accepted(sessions)
    runner.run_operation(sessions, operation_id, settings, generation_for(settings))
    runner.run_operation(sessions, operation_id, settings, generation_for(settings))
    with sessions() as session:
        row = operations.get_operation(session, operation_id)
    assert (row.status, row.attempts, row.error["status"]) == ("failed", 1, 404)
