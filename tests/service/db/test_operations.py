"""An operation's life in the database: claimed once at a time under a lease, claimable again
when the lease expires, ended only by the attempt that holds it, and failed for good after
OPERATION_MAX_ATTEMPTS claims; on SQLite and PostgreSQL."""

from datetime import timedelta

import pytest
from sqlalchemy import update

from service.db import operations
from service.db.attempts import StaleAttempt
from service.db.models import Operation, utcnow
from service.vocabulary import OperationKind
from tests.conftest import BACKENDS

pytestmark = pytest.mark.parametrize("sessions", BACKENDS, indirect=True)

REQUEST = {"model_id": 1, "body": {"dataset_id": 1}}


def accepted(sessions) -> int:
    with sessions() as session:
        return operations.create_operation(session, OperationKind.IMPORTANCE, REQUEST).id


def claim(sessions, operation_id: int, lease_seconds: float = 30, max_attempts: int = 3):
    with sessions() as session:
        return operations.claim_operation(session, operation_id, lease_seconds, max_attempts)


def shown(sessions, operation_id: int) -> Operation:
    with sessions() as session:
        return operations.get_operation(session, operation_id)


def expire(sessions, operation_id: int) -> None:
    with sessions() as session:
        session.execute(
            update(Operation)
            .where(Operation.id == operation_id)
            .values(claimed_until=utcnow() - timedelta(seconds=1))
        )
        session.commit()


def test_a_claimed_operation_is_not_claimed_twice_and_ends_once(sessions):
    operation_id = accepted(sessions)
    first = claim(sessions, operation_id)
    assert (first.number, first.kind, first.request) == (1, "importance", REQUEST)
    assert claim(sessions, operation_id) is None
    with sessions() as session:
        assert operations.end_operation(session, first, result={"importance": {}})
        assert not operations.end_operation(session, first, error={"status": 409})
    row = shown(sessions, operation_id)
    assert (row.status, row.result, row.error) == ("succeeded", {"importance": {}}, None)
    assert row.claimed_until is None and row.finished_at >= row.started_at >= row.created_at
    assert claim(sessions, operation_id) is None


def test_an_attempt_that_outlived_its_lease_is_fenced_off(sessions):
    operation_id = accepted(sessions)
    first = claim(sessions, operation_id)
    expire(sessions, operation_id)
    second = claim(sessions, operation_id)
    assert second.number == 2
    with sessions() as session:
        with pytest.raises(StaleAttempt):
            operations.renew_claim(session, first, 30)
        assert not operations.end_operation(session, first, result={})
        operations.renew_claim(session, second, 30)
        assert operations.end_operation(session, second, result={"attempt": 2})
    assert shown(sessions, operation_id).result == {"attempt": 2}


def test_an_operation_whose_workers_keep_dying_fails_after_the_last_attempt(sessions):
    operation_id = accepted(sessions)
    for _ in range(2):
        assert claim(sessions, operation_id, max_attempts=2) is not None
        expire(sessions, operation_id)
    assert claim(sessions, operation_id, max_attempts=2) is None
    row = shown(sessions, operation_id)
    assert (row.status, row.error["status"]) == ("failed", 500)
    assert "died on every attempt (2 of 2)" in row.error["message"]


def test_what_the_dispatcher_sends_never_sent_lost_or_with_a_dead_worker(sessions):
    never_sent, sent, running, ended = (accepted(sessions) for _ in range(4))
    long_ago = utcnow() - timedelta(seconds=60)
    with sessions() as session:
        for operation_id in (sent, running, ended):
            operations.mark_dispatched(session, operation_id)
    for operation_id in (running, ended):
        claim(sessions, operation_id)
    with sessions() as session:
        operations.end_operation(session, claim_of(sessions, ended), result={})

    def to_send(sent_before) -> list[int]:
        with sessions() as session:
            return operations.operations_to_dispatch(session, sent_before, 10)

    assert to_send(long_ago) == [never_sent]
    assert to_send(utcnow() + timedelta(seconds=1)) == [never_sent, sent]
    expire(sessions, running)
    assert to_send(utcnow() + timedelta(seconds=1)) == [never_sent, sent, running]


def claim_of(sessions, operation_id: int) -> operations.Claim:
    """The claim that holds the running ``operation_id`` now."""
    row = shown(sessions, operation_id)
    return operations.Claim(operation_id, row.attempts, row.tenant, row.kind, row.request)


def test_retention_deletes_only_operations_that_ended_before_the_cutoff(sessions):
    old, recent, unfinished = (accepted(sessions) for _ in range(3))
    for operation_id in (old, recent):
        held = claim(sessions, operation_id)
        with sessions() as session:
            operations.end_operation(session, held, result={})
    with sessions() as session:
        session.execute(
            update(Operation)
            .where(Operation.id.in_([old, unfinished]))
            .values(finished_at=utcnow() - timedelta(days=8))
        )
        session.commit()
        cutoff = utcnow() - timedelta(days=7)
        assert operations.delete_ended_before(session, cutoff, batch=10) == 1
        assert operations.delete_ended_before(session, cutoff, batch=10) == 0
    assert shown(sessions, old) is None
    assert shown(sessions, recent) is not None and shown(sessions, unfinished) is not None
