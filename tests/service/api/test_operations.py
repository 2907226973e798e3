"""``/v1/operations``: what an accepted request became, listed newest first, by status."""

import pytest

from tests.factories import assert_envelope
from tests.service.api.test_explanations import iris  # noqa: F401 (a fixture)
from tests.service.operation_runs import accepted_operation, run_now

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def accepted_importances(client, iris) -> list[int]:  # noqa: F811
    """Two importances of iris accepted as operations."""
    bodies = [
        {"dataset_id": iris["dataset_id"], "rows": 5, "method": "gradient"},
        {"dataset_id": iris["dataset_id"], "rows": 5},
    ]
    responses = [
        client.post("/v1/models/iris/importance", json=body, headers=ASYNC) for body in bodies
    ]
    return [accepted_operation(response) for response in responses]


def test_a_refusal_found_on_acceptance_is_a_422_not_an_operation(client, iris):  # noqa: F811
    body = {"dataset_id": iris["dataset_id"], "method": "gradient", "steps": 8}
    assert_envelope(client.post("/v1/models/iris/importance", json=body, headers=ASYNC), 422)
    assert client.get("/v1/operations").get_json() == []


def test_operations_are_listed_newest_first_and_by_status(
    client, sessions, settings, accepted_importances
):
    first, second = accepted_importances
    assert [row["id"] for row in client.get("/v1/operations").get_json()] == [second, first]
    ended = run_now(client, sessions, settings, second)
    assert ended["status"] == "succeeded"
    queued = client.get("/v1/operations?status=queued").get_json()
    assert [row["id"] for row in queued] == [first]
    assert_envelope(client.get("/v1/operations?status=lost"), 422, "status")
    assert_envelope(client.get("/v1/operations/999"), 404)
