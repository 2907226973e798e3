"""Dispatch: what the dispatcher process reads and writes (the outbox mark, which jobs to send,
and the reaping of expired leases). Every write is one conditional UPDATE, so several
dispatchers may run at once.
"""

import logging
from datetime import datetime
from typing import Protocol

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from service.db import webhooks
from service.db.models import TrainingJob, utcnow
from service.db.records import update_job_in
from service.vocabulary import JobStatus

logger = logging.getLogger(__name__)


class Publisher(Protocol):
    """What sends a job to the workers (service.broker.JobQueue)."""

    def enqueue_training(self, job_id: int) -> None: ...


def publish(session: Session, queue: Publisher, job_id: int) -> None:
    """Publish a stored job once and mark it dispatched. When that fails (the broker is down),
    the job stays queued with ``dispatched_at`` NULL, for the dispatcher to send later."""
    try:
        queue.enqueue_training(job_id)
        mark_dispatched(session, job_id)
    except Exception as error:  # kombu, redis and SQLAlchemy each raise their own types
        session.rollback()
        logger.warning("job %s stays queued for the dispatcher: %s", job_id, error)


def mark_dispatched(session: Session, job_id: int) -> None:
    """Record that job ``job_id`` was just published to the broker (the outbox mark), and commit.

    Only a queued job is marked: a job a worker claimed already in the meantime needs no mark.
    """
    update_job_in(session, job_id, JobStatus.QUEUED, dispatched_at=utcnow())


def reap_expired_leases(session: Session, max_attempts: int) -> dict[JobStatus, list[int]]:
    """End or re-queue the running jobs whose lease expired (their worker died), and commit.

    A job asked to stop becomes cancelled; one with attempts left goes back to queued with no
    dispatch mark (the dispatcher sends it again); one without fails as a poison job. Returns
    the ids of the jobs moved, by their new status.
    """
    now = utcnow()
    expired = and_(TrainingJob.status == JobStatus.RUNNING, TrainingJob.lease_expires_at < now)
    cancelled = TrainingJob.cancel_requested.is_(True)
    exhausted = TrainingJob.attempt >= max_attempts
    ended = {"finished_at": now, "lease_owner": None, "lease_expires_at": None}
    moves = {
        JobStatus.CANCELLED: (cancelled, ended),
        JobStatus.FAILED: (
            ~cancelled & exhausted,
            {**ended, "error": poison_message(max_attempts)},
        ),
        JobStatus.QUEUED: (
            ~cancelled & ~exhausted,
            {"dispatched_at": None, "lease_owner": None, "lease_expires_at": None},
        ),
    }
    moved = {}
    for status, (condition, values) in moves.items():
        rows = session.execute(
            update(TrainingJob)
            .where(expired, condition)
            .values(status=status, **values)
            .returning(TrainingJob.id, TrainingJob.tenant, TrainingJob.sweep_id)
        ).all()
        moved[status] = [row.id for row in rows]
        if status is not JobStatus.QUEUED:
            for row in rows:
                error = values.get("error")
                webhooks.record_job_finished(
                    session, row.tenant, row.id, status, error, sweep_id=row.sweep_id
                )
    session.commit()
    return moved


def poison_message(max_attempts: int) -> str:
    return (
        f"the worker training this job died on every attempt ({max_attempts} of {max_attempts}); "
        "it was not retried again (a job that kills its worker, e.g. by running out of memory)"
    )


def jobs_to_dispatch(session: Session, sent_before: datetime | None, limit: int) -> list[int]:
    """Queued jobs never sent to the broker (or re-queued since), oldest first; with
    ``sent_before``, also those sent before that time and still queued."""
    condition = TrainingJob.dispatched_at.is_(None)
    if sent_before is not None:
        condition = condition | (TrainingJob.dispatched_at < sent_before)
    return list(
        session.scalars(
            select(TrainingJob.id)
            .where(TrainingJob.status == JobStatus.QUEUED, condition)
            .order_by(TrainingJob.id)
            .limit(limit)
        )
    )
