"""Operations in the database: accepted (the outbox row the API commits before answering 202),
dispatched, claimed by a worker under a lease that it renews while it runs, ended with a result
or an error. Every write after the first is one conditional UPDATE fenced by the claim's number,
so several dispatchers and workers may run, and a worker that outlived its lease writes nothing.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from service.db.attempts import StaleAttempt
from service.db.models import Operation, utcnow
from service.db.records import page
from service.vocabulary import OperationKind, OperationStatus

UNFINISHED = (OperationStatus.QUEUED, OperationStatus.RUNNING)


def create_operation(session: Session, kind: OperationKind, request: dict) -> Operation:
    """Accept an operation of ``kind`` for the session's tenant, and commit."""
    row = Operation(kind=kind, request=request)
    session.add(row)
    session.commit()
    return row


def get_operation(session: Session, operation_id: int) -> Operation | None:
    return session.scalar(select(Operation).where(Operation.id == operation_id))


def list_operations(
    session: Session, status: OperationStatus | None, offset: int, limit: int
) -> tuple[list[Operation], int]:
    """The tenant's operations, newest first, of ``status`` if given."""
    statement = select(Operation).order_by(Operation.id.desc())
    if status is not None:
        statement = statement.where(Operation.status == status)
    return page(session, statement, offset, limit)


def mark_dispatched(session: Session, operation_id: int) -> None:
    """Record that the operation was just published to the operations queue, and commit."""
    session.execute(
        update(Operation).where(Operation.id == operation_id).values(dispatched_at=utcnow())
    )
    session.commit()


def _claimable(now: datetime) -> Any:
    """Unfinished and held by no live lease: never claimed, or its worker died."""
    return and_(
        Operation.status.in_(UNFINISHED),
        or_(Operation.claimed_until.is_(None), Operation.claimed_until < now),
    )


def operations_to_dispatch(session: Session, sent_before: datetime, limit: int) -> list[int]:
    """Claimable operations never published, or published before ``sent_before`` and still
    unclaimed or with an expired lease (the message or its worker was lost), oldest first."""
    unsent = or_(Operation.dispatched_at.is_(None), Operation.dispatched_at < sent_before)
    return list(
        session.scalars(
            select(Operation.id)
            .where(_claimable(utcnow()), unsent)
            .order_by(Operation.id)
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class Claim:
    """Operation ``operation_id`` claimed for attempt ``number``, for ``tenant``."""

    operation_id: int
    number: int
    tenant: str
    kind: OperationKind
    request: dict


def claim_operation(
    session: Session, operation_id: int, lease_seconds: float, max_attempts: int
) -> Claim | None:
    """Take a claimable operation for its next attempt under a lease, and commit; None when it
    is not claimable (ended, being run, or a duplicate message). One whose workers died on
    ``max_attempts`` attempts already ends failed instead."""
    now = utcnow()
    claimed = session.execute(
        update(Operation)
        .where(Operation.id == operation_id, _claimable(now))
        .values(
            attempts=Operation.attempts + 1,
            status=OperationStatus.RUNNING,
            started_at=now,
            claimed_until=now + timedelta(seconds=lease_seconds),
        )
        .returning(Operation.attempts, Operation.tenant, Operation.kind, Operation.request)
    ).one_or_none()
    if claimed is None:
        session.rollback()
        return None
    session.commit()
    claim = Claim(operation_id, claimed.attempts, claimed.tenant, claimed.kind, claimed.request)
    if claim.number > max_attempts:
        message = (
            f"the worker running this operation died on every attempt ({max_attempts} of "
            f"{max_attempts}); it was not tried again"
        )
        end_operation(session, claim, error=error_body(500, message))
        return None
    return claim


def renew_claim(session: Session, claim: Claim, lease_seconds: float) -> None:
    """Extend the claim's lease by ``lease_seconds`` from now, and commit; ``StaleAttempt`` when
    a later attempt holds the operation (this one outlived its lease) or it ended."""
    renewed = session.execute(
        update(Operation)
        .where(_held_by(claim))
        .values(claimed_until=utcnow() + timedelta(seconds=lease_seconds))
    )
    if renewed.rowcount != 1:
        session.rollback()
        raise StaleAttempt(f"operation {claim.operation_id} is no longer run by this attempt")
    session.commit()


def end_operation(
    session: Session, claim: Claim, result: dict | None = None, error: dict | None = None
) -> bool:
    """End the claimed operation with ``result`` (succeeded) or ``error`` (failed), and commit;
    False, and nothing written, when a later attempt holds it."""
    status = OperationStatus.FAILED if error is not None else OperationStatus.SUCCEEDED
    ended = session.execute(
        update(Operation)
        .where(_held_by(claim))
        .values(
            status=status,
            result=result,
            error=error,
            finished_at=utcnow(),
            claimed_until=None,
        )
    )
    if ended.rowcount != 1:
        session.rollback()
        return False
    session.commit()
    return True


def delete_ended_before(session: Session, before: datetime, batch: int) -> int:
    """Delete at most ``batch`` operations that ended before ``before``, and commit; how many
    went. Unfinished ones stay, however old."""
    ended_ids = select(Operation.id).where(
        Operation.status.not_in(UNFINISHED), Operation.finished_at < before
    )
    deleted = session.execute(
        delete(Operation).where(Operation.id.in_(ended_ids.order_by(Operation.id).limit(batch)))
    ).rowcount
    session.commit()
    return deleted


def _held_by(claim: Claim) -> Any:
    return and_(
        Operation.id == claim.operation_id,
        Operation.attempts == claim.number,
        Operation.status == OperationStatus.RUNNING,
    )


# The answers an operation can end with, named as the API's error envelope names them.
ERROR_CODES = {
    404: "not_found",
    409: "conflict",
    422: "unprocessable_entity",
    500: "internal_server_error",
}


def error_body(status: int, message: str, details: dict | None = None) -> dict:
    """An operation's ``error``: the envelope the request would have answered (its ``code``,
    ``message`` and ``details``) with that answer's HTTP ``status``."""
    code = ERROR_CODES[status]
    return {"status": status, "code": code, "message": message, "details": details or {}}
