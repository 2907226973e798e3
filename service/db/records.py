"""Records: create, read and delete data sets, jobs, epoch records and models, as small
functions taking a session (the API's reads, the worker's loads).

Blobs (data set arrays, model bytes) are read the fastest way the database allows.
"""

from collections.abc import Callable
from typing import Any, BinaryIO, NamedTuple

import numpy as np
from sqlalchemy import Column, Select, Table, exists, func, select, update
from sqlalchemy.orm import Session

from service.db.blob_writes import defer_wal_checkpoint, write_dataset_arrays
from service.db.models import Dataset, DatasetBlob, EpochMetric, TrainedModel, TrainingJob
from service.db.npz import npz_to_arrays
from service.db.tenancy import tenant_of
from service.vocabulary import ACTIVE_STATUSES, JobStatus

# No table holds this many rows; a larger offset would overflow the driver's integer.
MAX_OFFSET = 2**62


def page(session: Session, statement: Select, offset: int, limit: int) -> tuple[list, int]:
    """Return one page of ``statement``'s rows and the total row count."""
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    if offset >= MAX_OFFSET:
        return [], total
    rows = session.scalars(statement.offset(offset).limit(limit)).all()
    return list(rows), total


def add(session: Session, row: TrainingJob) -> TrainingJob:
    """Insert ``row`` and commit; the row comes back with its id."""
    session.add(row)
    session.commit()
    return row


def add_dataset(session: Session, dataset: Dataset, npz: BinaryIO) -> Dataset:
    """Insert ``dataset`` and its arrays, ``dataset.stored_bytes`` of ``.npz`` read in pieces
    from ``npz``, and commit: both rows or, on any failure, neither. On SQLite the commit
    leaves the WAL's checkpoint to ``blob_writes.checkpoint_wal`` (or the next commit)."""
    try:
        session.add(dataset)
        session.flush()
        write_dataset_arrays(session, dataset.id, npz, dataset.stored_bytes)
        defer_wal_checkpoint(session)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return dataset


def list_datasets(session: Session, offset: int, limit: int) -> tuple[list[Dataset], int]:
    return page(session, select(Dataset).order_by(Dataset.id), offset, limit)


def get_dataset(session: Session, dataset_id: int) -> Dataset | None:
    return session.get(Dataset, dataset_id)


def dataset_in_use(session: Session, dataset_id: int) -> bool:
    """True while a queued or running job trains on the dataset."""
    active = (TrainingJob.dataset_id == dataset_id) & TrainingJob.status.in_(ACTIVE_STATUSES)
    return bool(session.scalar(select(exists().where(active))))


def delete_row(session: Session, row: Dataset | TrainedModel) -> None:
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


def loss_history(session: Session, job_id: int) -> list[tuple[int, float, float | None]]:
    """Every epoch of the job as (epoch, train_loss, val_loss), in order: plain rows, not ORM
    objects (a 10,000-epoch job reads in 10 ms instead of 75 ms on SQLite)."""
    statement = (
        select(EpochMetric.epoch, EpochMetric.train_loss, EpochMetric.val_loss)
        .where(EpochMetric.job_id == job_id)
        .order_by(EpochMetric.epoch)
    )
    return [tuple(row) for row in session.execute(statement)]


def list_models(session: Session, offset: int, limit: int) -> tuple[list[TrainedModel], int]:
    return page(session, select(TrainedModel).order_by(TrainedModel.id), offset, limit)


def get_model(session: Session, model_id: int) -> TrainedModel | None:
    return session.get(TrainedModel, model_id)


def row_exists(
    session: Session, entity: type[TrainedModel] | type[TrainingJob], row_id: int
) -> bool:
    """Whether the row is there, without loading it."""
    return bool(session.scalar(select(exists().where(entity.id == row_id))))


def blob_statement(column: Column, owner: Table, row_id: int, tenant: str | None) -> Select:
    """``column`` of row ``row_id`` of ``owner``, the table it is in or a table that has its
    row by a foreign key; of ``tenant``'s rows only, unless None."""
    source = owner if column.table is owner else owner.join(column.table)
    statement = select(column).select_from(source).where(owner.c.id == row_id)
    return statement if tenant is None else statement.where(owner.c.tenant == tenant)


def select_blob(session: Session, statement: Select) -> bytes | None:
    return session.scalar(statement)


def select_blob_binary(session: Session, statement: Select) -> bytes | None:
    """PostgreSQL: psycopg sends bytea as hex text unless asked for binary results, which
    makes a 200 MB data set take seconds longer to load."""
    compiled = statement.compile(dialect=session.get_bind().dialect)
    driver_connection = session.connection().connection.driver_connection
    with driver_connection.cursor(binary=True) as cursor:
        cursor.execute(str(compiled), compiled.params)
        row = cursor.fetchone()
    return None if row is None else row[0]


BLOB_READERS: dict[str, Callable[[Session, Select], bytes | None]] = {
    "postgresql": select_blob_binary,
}


def read_blob(session: Session, column: Column, owner: Table, row_id: int) -> bytes | None:
    """The bytes in ``column`` of row ``row_id`` of ``owner`` (``blob_statement``), read the
    fastest way the database allows: not through the ORM, so the session's tenant
    (service/db/tenancy.py) is applied here."""
    reader = BLOB_READERS.get(session.get_bind().dialect.name, select_blob)
    return reader(session, blob_statement(column, owner, row_id, tenant_of(session)))


def get_model_blob(session: Session, model_id: int) -> bytes | None:
    return read_blob(session, TrainedModel.__table__.c.blob, TrainedModel.__table__, model_id)


class DatasetArrays(NamedTuple):
    """A data set as stored: ``x`` (n_samples, n_features), ``y``, and each row's weight
    ``sample_weight`` (n_samples,) or None."""

    x: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray | None


def get_dataset_arrays(session: Session, dataset_id: int) -> DatasetArrays:
    """The data set's arrays, as stored."""
    column = DatasetBlob.__table__.c.arrays
    arrays = npz_to_arrays(read_blob(session, column, Dataset.__table__, dataset_id))
    return DatasetArrays(arrays["X"], arrays["y"], arrays.get("w"))


def update_job_in(session: Session, job_id: int, current: JobStatus, **values: Any) -> bool:
    """Update job ``job_id`` only while its status is ``current``; commit; True when it did."""
    result = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status == current)
        .values(**values)
    )
    session.commit()
    return result.rowcount == 1
