"""Every read and write the API and the worker make, as small functions taking a session.

Writes made on behalf of a training attempt are fenced by the job's ``attempt`` number: a worker
whose attempt is no longer current changes nothing (``StaleAttempt``).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Column, Select, exists, func, insert, select, update
from sqlalchemy.orm import Session

from service.db.models import (
    ACTIVE_STATUSES,
    Dataset,
    EpochMetric,
    JobStatus,
    Model,
    TrainingJob,
    npz_to_arrays,
    utcnow,
)


class StaleAttempt(Exception):
    """The job is no longer running under this attempt; the caller must stop writing."""


def page(session: Session, statement: Select, offset: int, limit: int) -> tuple[list, int]:
    """Return one page of ``statement``'s rows and the total row count."""
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
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


def model_exists(session: Session, model_id: int) -> bool:
    return bool(session.scalar(select(exists().where(Model.id == model_id))))


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


def claim_job(session: Session, job_id: int) -> int | None:
    """Move a queued job to running under a new attempt number and return that number.

    Returns None when the job is not queued (already claimed, finished or gone), so a task
    delivered twice trains once.
    """
    claimed = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status == JobStatus.QUEUED)
        .values(status=JobStatus.RUNNING, attempt=TrainingJob.attempt + 1, started_at=utcnow())
        .returning(TrainingJob.attempt)
    ).scalar()
    session.commit()
    return claimed


def _update_running_job(session: Session, job_id: int, attempt: int, **values: Any) -> None:
    """Update the job only while it runs under ``attempt``; raise ``StaleAttempt`` otherwise."""
    result = session.execute(
        update(TrainingJob)
        .where(
            TrainingJob.id == job_id,
            TrainingJob.attempt == attempt,
            TrainingJob.status == JobStatus.RUNNING,
        )
        .values(**values)
    )
    if result.rowcount != 1:
        session.rollback()
        raise StaleAttempt(f"job {job_id} is no longer running as attempt {attempt}")


def latest_metrics(record: Mapping[str, Any]) -> dict[str, Any]:
    """The job columns that mirror its latest epoch record."""
    return {
        "epoch": record["epoch"],
        "train_loss": record["train_loss"],
        "val_loss": record["val_loss"],
        "train_accuracy": record["train_accuracy"],
        "val_accuracy": record["val_accuracy"],
    }


def add_epochs(
    session: Session, job_id: int, attempt: int, records: Sequence[Mapping[str, Any]]
) -> None:
    """Insert a batch of epoch records and move the job's latest figures, in one transaction."""
    if records:
        _write_attempt(session, job_id, attempt, records)
        session.commit()


def finish_job(
    session: Session, job_id: int, attempt: int, records: Sequence[Mapping[str, Any]], model: Model
) -> None:
    """Write the last epoch records, the model and the succeeded status together."""
    _write_attempt(
        session, job_id, attempt, records, status=JobStatus.SUCCEEDED, finished_at=utcnow()
    )
    session.add(model)
    session.commit()


def fail_job(
    session: Session, job_id: int, attempt: int, records: Sequence[Mapping[str, Any]], message: str
) -> None:
    """Write the last epoch records (the history is kept) and the failed status with ``message``."""
    _write_attempt(
        session,
        job_id,
        attempt,
        records,
        status=JobStatus.FAILED,
        finished_at=utcnow(),
        error=message,
    )
    session.commit()


def _write_attempt(
    session: Session,
    job_id: int,
    attempt: int,
    records: Sequence[Mapping[str, Any]],
    **values: Any,
) -> None:
    """Update the job (fenced by attempt) and insert ``records``, without committing."""
    latest = latest_metrics(records[-1]) if records else {}
    _update_running_job(session, job_id, attempt, **latest, **values)
    if records:
        session.execute(insert(EpochMetric), [_epoch_row(job_id, record) for record in records])


def _epoch_row(job_id: int, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"job_id": job_id, **latest_metrics(record), "seconds": record["seconds"]}


def fail_queued_job(session: Session, job_id: int, message: str) -> None:
    """Mark a job that never reached a worker as failed (e.g. the broker refused it)."""
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status == JobStatus.QUEUED)
        .values(status=JobStatus.FAILED, finished_at=utcnow(), error=message)
    )
    session.commit()


def mark_dispatched(session: Session, job_id: int) -> None:
    """Record that job ``job_id`` was just published to the broker (the outbox mark), and commit.

    Only a queued job is marked: a job a worker claimed already in the meantime needs no mark.
    """
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status == JobStatus.QUEUED)
        .values(dispatched_at=utcnow())
    )
    session.commit()
