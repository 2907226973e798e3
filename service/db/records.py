"""Every read and write the API and the worker make, as small functions taking a session.

Writes made on behalf of a training attempt are fenced by the job's ``attempt`` number: a worker
whose attempt is no longer current changes nothing (``StaleAttempt``).
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from service.db.models import (
    ACTIVE_STATUSES,
    EPOCH_FIGURES,
    Dataset,
    EpochMetric,
    JobCheckpoint,
    JobStatus,
    Model,
    TrainingJob,
    utcnow,
)
from service.db.npz import npz_to_arrays


class StaleAttempt(Exception):
    """The job is no longer running under this attempt; the caller must stop writing."""


# No table holds this many rows; a larger offset would overflow the driver's integer.
MAX_OFFSET = 2**62


def page(session: Session, statement: Select, offset: int, limit: int) -> tuple[list, int]:
    """Return one page of ``statement``'s rows and the total row count."""
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    if offset >= MAX_OFFSET:
        return [], total
    rows = session.scalars(statement.offset(offset).limit(limit)).all()
    return list(rows), total


def add(session: Session, row: Dataset | TrainingJob) -> Dataset | TrainingJob:
    """Insert ``row`` and commit; the row comes back with its id."""
    session.add(row)
    session.commit()
    return row


def list_datasets(session: Session, offset: int, limit: int) -> tuple[list[Dataset], int]:
    return page(session, select(Dataset).order_by(Dataset.id), offset, limit)


def get_dataset(session: Session, dataset_id: int) -> Dataset | None:
    return session.get(Dataset, dataset_id)


def dataset_in_use(session: Session, dataset_id: int) -> bool:
    """True while a queued or running job trains on the dataset."""
    active = (TrainingJob.dataset_id == dataset_id) & TrainingJob.status.in_(ACTIVE_STATUSES)
    return bool(session.scalar(select(exists().where(active))))


def delete_row(session: Session, row: Dataset | Model) -> None:
    session.delete(row)
    session.commit()


def list_jobs(session: Session, offset: int, limit: int) -> tuple[list[TrainingJob], int]:
    return page(session, select(TrainingJob).order_by(TrainingJob.id), offset, limit)


def get_job(session: Session, job_id: int) -> TrainingJob | None:
    return session.get(TrainingJob, job_id)


def list_epochs(session: Session, job_id: int, after: int, limit: int) -> list[EpochMetric]:
    """The job's epoch records with ``epoch > after``, in epoch order, at most ``limit``."""
    statement = (
        select(EpochMetric)
        .where(EpochMetric.job_id == job_id, EpochMetric.epoch > after)
        .order_by(EpochMetric.epoch)
        .limit(limit)
    )
    return list(session.scalars(statement))


def list_models(session: Session, offset: int, limit: int) -> tuple[list[Model], int]:
    return page(session, select(Model).order_by(Model.id), offset, limit)


def get_model(session: Session, model_id: int) -> Model | None:
    return session.get(Model, model_id)


def row_exists(session: Session, entity: type[Model] | type[TrainingJob], row_id: int) -> bool:
    """Whether the row is there, without loading it."""
    return bool(session.scalar(select(exists().where(entity.id == row_id))))


def select_blob(session: Session, column: Column, row_id: int) -> bytes | None:
    return session.scalar(select(column).where(column.table.c.id == row_id))


def select_blob_binary(session: Session, column: Column, row_id: int) -> bytes | None:
    """PostgreSQL: psycopg sends bytea as hex text unless asked for binary results, which
    makes a 200 MB data set take seconds longer to load."""
    driver_connection = session.connection().connection.driver_connection
    with driver_connection.cursor(binary=True) as cursor:
        cursor.execute(f"SELECT {column.name} FROM {column.table.name} WHERE id = %s", (row_id,))
        row = cursor.fetchone()
    return None if row is None else row[0]


BLOB_READERS: dict[str, Callable[[Session, Column, int], bytes | None]] = {
    "postgresql": select_blob_binary,
}


def read_blob(session: Session, column: Column, row_id: int) -> bytes | None:
    """The bytes in ``column`` of row ``row_id``, read the fastest way the database allows."""
    reader = BLOB_READERS.get(session.get_bind().dialect.name, select_blob)
    return reader(session, column, row_id)


def get_model_blob(session: Session, model_id: int) -> bytes | None:
    return read_blob(session, Model.__table__.c.blob, model_id)


def get_dataset_arrays(session: Session, dataset_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The data set's ``X`` (n_samples, n_features) and ``y``, as stored."""
    arrays = npz_to_arrays(read_blob(session, Dataset.__table__.c.arrays, dataset_id))
    return arrays["X"], arrays["y"]


@dataclass(frozen=True)
class Claim:
    """A claimed attempt: its number, and the epoch its checkpoint covers (0: start afresh)."""

    attempt: int
    resume_epoch: int


def _claimable(max_attempts: int, now: datetime) -> ColumnElement[bool]:
    """Queued, or running under a lease that expired (its worker is gone) and not being
    cancelled; with attempts left either way (the reaper fails a job that has none)."""
    abandoned = and_(
        TrainingJob.status == JobStatus.RUNNING,
        TrainingJob.lease_expires_at < now,
        TrainingJob.cancel_requested.is_(False),
    )
    return and_(
        or_(TrainingJob.status == JobStatus.QUEUED, abandoned),
        TrainingJob.attempt < max_attempts,
    )


def claim_job(
    session: Session, job_id: int, owner: str, lease_seconds: float, max_attempts: int
) -> Claim | None:
    """Take job ``job_id`` for a new attempt under a lease held by ``owner``, and commit.

    One conditional UPDATE, so of two deliveries of a job only one gets it; None when the job
    is not claimable (running under a live lease, finished, cancelled, out of attempts, gone).
    In the same transaction the epoch records after the job's checkpoint (those a lost attempt
    wrote after it) are deleted, so that the new attempt resumes from the checkpoint and writes
    every later epoch exactly once.
    """
    now = utcnow()
    attempt = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, _claimable(max_attempts, now))
        .values(
            status=JobStatus.RUNNING,
            attempt=TrainingJob.attempt + 1,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(TrainingJob.started_at, now),
        )
        .returning(TrainingJob.attempt)
    ).scalar()
    if attempt is None:
        session.rollback()
        return None
    resume_epoch = _rewind_to_checkpoint(session, job_id)
    session.commit()
    return Claim(attempt, resume_epoch)


def _rewind_to_checkpoint(session: Session, job_id: int) -> int:
    """Delete the epoch records after the checkpoint and show its epoch's figures on the job."""
    resume_epoch = (
        session.scalar(select(JobCheckpoint.epoch).where(JobCheckpoint.job_id == job_id)) or 0
    )
    session.execute(
        delete(EpochMetric).where(EpochMetric.job_id == job_id, EpochMetric.epoch > resume_epoch)
    )
    figures = [getattr(EpochMetric, name) for name in EPOCH_FIGURES]
    last = (
        session.execute(
            select(*figures).where(EpochMetric.job_id == job_id, EpochMetric.epoch == resume_epoch)
        )
        .mappings()
        .first()
    )
    latest = dict(last) if last else {figure.key: None for figure in figures}
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id)
        .values(**{**latest, "epoch": resume_epoch, "checkpoint_epoch": resume_epoch or None})
    )
    return resume_epoch


def get_checkpoint(session: Session, job_id: int) -> bytes | None:
    """The bytes of the job's latest checkpoint (model_core's ``Trainer.checkpoint()``)."""
    return session.scalar(select(JobCheckpoint.blob).where(JobCheckpoint.job_id == job_id))


def renew_lease(session: Session, job_id: int, attempt: int, lease_seconds: float) -> None:
    """Extend the attempt's lease by ``lease_seconds`` from now; ``StaleAttempt`` if it is lost."""
    lease_expires_at = utcnow() + timedelta(seconds=lease_seconds)
    _update_running_job(session, job_id, attempt, lease_expires_at=lease_expires_at)
    session.commit()


def _update_running_job(session: Session, job_id: int, attempt: int, **values: Any) -> bool:
    """Update the job only while it runs under ``attempt`` and return its ``cancel_requested``;
    raise ``StaleAttempt`` otherwise."""
    cancel_requested = session.execute(
        update(TrainingJob)
        .where(
            TrainingJob.id == job_id,
            TrainingJob.attempt == attempt,
            TrainingJob.status == JobStatus.RUNNING,
        )
        .values(**values)
        .returning(TrainingJob.cancel_requested)
    ).scalar()
    if cancel_requested is None:
        session.rollback()
        raise StaleAttempt(f"job {job_id} is no longer running as attempt {attempt}")
    return cancel_requested


def latest_metrics(record: Mapping[str, Any]) -> dict[str, Any]:
    """The job columns that mirror its latest epoch record."""
    return {"epoch": record["epoch"], **{name: record[name] for name in EPOCH_FIGURES}}


@dataclass(frozen=True)
class Checkpoint:
    """Training state after ``epoch`` (model_core's checkpoint bytes)."""

    epoch: int
    blob: bytes


def record_progress(
    session: Session,
    job_id: int,
    attempt: int,
    records: Sequence[Mapping[str, Any]],
    checkpoint: Checkpoint | None = None,
) -> bool:
    """Insert a batch of epoch records, move the job's latest figures and replace its checkpoint
    (which covers those records), in one transaction; return whether a cancel was requested.

    The cancel flag comes back from the same fenced UPDATE, so reading it costs no round trip.
    """
    values = {} if checkpoint is None else {"checkpoint_epoch": checkpoint.epoch}
    cancel_requested = _write_attempt(session, job_id, attempt, records, **values)
    if checkpoint is not None:
        session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id == job_id))
        session.add(
            JobCheckpoint(
                job_id=job_id, attempt=attempt, epoch=checkpoint.epoch, blob=checkpoint.blob
            )
        )
    session.commit()
    return cancel_requested


def end_attempt(
    session: Session,
    job_id: int,
    attempt: int,
    records: Sequence[Mapping[str, Any]],
    status: JobStatus,
    error: str | None = None,
    model: Model | None = None,
) -> None:
    """Write the last epoch records, the model if any and the final ``status`` together.

    The history is kept whatever the status; the checkpoint, no longer needed, is deleted.
    """
    _write_attempt(
        session,
        job_id,
        attempt,
        records,
        status=status,
        error=error,
        finished_at=utcnow(),
        lease_owner=None,
        lease_expires_at=None,
        checkpoint_epoch=None,
    )
    session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id == job_id))
    if model is not None:
        session.add(model)
    session.commit()


def _write_attempt(
    session: Session,
    job_id: int,
    attempt: int,
    records: Sequence[Mapping[str, Any]],
    **values: Any,
) -> bool:
    """Update the job (fenced by attempt) and insert ``records``, without committing; return
    the job's ``cancel_requested``."""
    latest = latest_metrics(records[-1]) if records else {}
    cancel_requested = _update_running_job(session, job_id, attempt, **latest, **values)
    if records:
        session.execute(insert(EpochMetric), [_epoch_row(job_id, record) for record in records])
    return cancel_requested


def _epoch_row(job_id: int, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"job_id": job_id, **latest_metrics(record), "seconds": record["seconds"]}


def update_job_in(session: Session, job_id: int, current: JobStatus, **values: Any) -> bool:
    """Update job ``job_id`` only while its status is ``current``; commit; True when it did."""
    result = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status == current)
        .values(**values)
    )
    session.commit()
    return result.rowcount == 1


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
        moved[status] = list(
            session.scalars(
                update(TrainingJob)
                .where(expired, condition)
                .values(status=status, **values)
                .returning(TrainingJob.id)
            )
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
