"""The API's own reads and writes on jobs: cancellation, idempotency keys, progress for streams.

Plain SQLAlchemy taking a session, like ``records``; each write is one conditional UPDATE, so a
request racing a worker changes a job only in the state it expects.
"""

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db import webhooks
from service.db.models import TrainingJob, utcnow
from service.db.records import update_job_in
from service.vocabulary import JobStatus


def cancel_queued_job(session: Session, job_id: int) -> bool:
    """End a queued job as cancelled at once, with its ``job.finished`` event, and commit; a
    worker's claim then finds nothing to train."""
    ended = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, finished_at=utcnow())
        .returning(TrainingJob.tenant, TrainingJob.sweep_id)
    ).one_or_none()
    if ended is not None:
        webhooks.record_job_finished(
            session, ended.tenant, job_id, JobStatus.CANCELLED, sweep_id=ended.sweep_id
        )
    session.commit()
    return ended is not None


def request_cancel(session: Session, job_id: int) -> bool:
    """Ask the running attempt of job ``job_id`` to stop at its next epoch boundary."""
    return update_job_in(session, job_id, JobStatus.RUNNING, cancel_requested=True)


def find_job_by_key(session: Session, key: str, created_after: datetime) -> TrainingJob | None:
    """The job submitted with idempotency ``key`` after ``created_after`` (older keys expired)."""
    statement = select(TrainingJob).where(
        TrainingJob.idempotency_key == key, TrainingJob.created_at > created_after
    )
    return session.scalars(statement).first()


def release_expired_key(session: Session, key: str, created_after: datetime) -> None:
    """Free ``key`` from a job created before ``created_after``, without committing: the key's
    next job is inserted in the same transaction."""
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.idempotency_key == key, TrainingJob.created_at <= created_after)
        .values(idempotency_key=None)
    )
