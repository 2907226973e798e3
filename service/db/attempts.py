"""Attempts: the life of one worker's try at a job (claim, lease, heartbeat, progress, end).

Every write made on behalf of an attempt is fenced by the job's ``attempt`` number: a worker whose
attempt is no longer current changes nothing (``StaleAttempt``).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    TextClause,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from service.db import registry, sweeps, webhooks
from service.db.models import (
    EpochMetric,
    JobCheckpoint,
    TrainedModel,
    TrainingJob,
    UtcDateTime,
    utcnow,
)
from service.vocabulary import EPOCH_FIGURES, JobStatus


class StaleAttempt(Exception):
    """The job is no longer running under this attempt; the caller must stop writing."""


@dataclass(frozen=True)
class Claim:
    """A claimed attempt: its number, the epoch its checkpoint covers (0: start afresh), and the
    request id the job was submitted with (for the worker's log lines)."""

    attempt: int
    resume_epoch: int
    request_id: str | None = None


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
    claimed = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, _claimable(max_attempts, now))
        .values(
            status=JobStatus.RUNNING,
            attempt=TrainingJob.attempt + 1,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(TrainingJob.started_at, now),
        )
        .returning(TrainingJob.attempt, TrainingJob.request_id)
    ).one_or_none()
    if claimed is None:
        session.rollback()
        return None
    resume_epoch = _rewind_to_checkpoint(session, job_id)
    session.commit()
    return Claim(claimed.attempt, resume_epoch, claimed.request_id)


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


class EpochRecords(list):
    """The epoch records of one flush (consecutive epochs, following the last one stored), with
    what the flush does besides: renew the lease (``lease_seconds`` from now; None: not at all),
    and whether its commit must be durable before it returns (``synchronous``) or may be
    asynchronous (PostgreSQL's ``synchronous_commit = off``: a crash of the database may lose it,
    which the next flush notices, ``HistoryGap``)."""

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]] = (),
        lease_seconds: float | None = None,
        synchronous: bool = True,
    ):
        super().__init__(records)
        self.lease_seconds = lease_seconds
        self.synchronous = synchronous


class HistoryGap(Exception):
    """The job's stored history ends at ``stored_epoch``, before the records of a flush begin:
    an asynchronous commit acknowledged earlier was lost (the database crashed). Nothing was
    written; the caller writes again from ``stored_epoch + 1``."""

    def __init__(self, job_id: int, stored_epoch: int):
        super().__init__(f"job {job_id}: history stored up to epoch {stored_epoch} only")
        self.stored_epoch = stored_epoch


def record_progress(
    session: Session,
    job_id: int,
    attempt: int,
    records: Sequence[Mapping[str, Any]],
    checkpoint: Checkpoint | None = None,
) -> bool:
    """Insert a batch of epoch records, move the job's latest figures, renew the lease (when
    ``records`` is ``EpochRecords`` with ``lease_seconds``) and replace the checkpoint (which
    covers those records), atomically; return whether a cancel was requested.

    On PostgreSQL this is one statement, so one round trip (docs/scaling.md). The records must
    follow the last stored epoch (the job's ``epoch``): ``HistoryGap`` otherwise, and nothing is
    written; ``StaleAttempt`` when the attempt is no longer current.
    """
    batch = records if isinstance(records, EpochRecords) else EpochRecords(records)
    if batch and session.get_bind().dialect.name == "postgresql":
        cancel_requested = _record_in_one_statement(session, job_id, attempt, batch, checkpoint)
    else:
        cancel_requested = _record_in_one_transaction(session, job_id, attempt, batch, checkpoint)
    if cancel_requested is None:
        _raise_fenced_off(session, job_id, attempt, batch)
    return cancel_requested


def _progress_values(batch: EpochRecords, checkpoint: Checkpoint | None) -> dict[str, Any]:
    """The job columns a flush sets: latest figures, lease, checkpoint epoch."""
    values = latest_metrics(batch[-1]) if batch else {}
    if batch.lease_seconds is not None:
        values["lease_expires_at"] = utcnow() + timedelta(seconds=batch.lease_seconds)
    if checkpoint is not None:
        values["checkpoint_epoch"] = checkpoint.epoch
    return values


def _fence(job_id: int, attempt: int, batch: EpochRecords) -> list[ColumnElement[bool]]:
    """The job row a flush may write: running under ``attempt``, its history ending right
    before the batch."""
    conditions = [
        TrainingJob.id == job_id,
        TrainingJob.attempt == attempt,
        TrainingJob.status == JobStatus.RUNNING,
    ]
    if batch:
        conditions.append(func.coalesce(TrainingJob.epoch, 0) == batch[0]["epoch"] - 1)
    return conditions


def _raise_fenced_off(session: Session, job_id: int, attempt: int, batch: EpochRecords) -> None:
    """Say why a flush wrote nothing: ``StaleAttempt``, or ``HistoryGap`` (a rare second round
    trip, after the database lost acknowledged commits)."""
    session.rollback()
    stored_epoch = session.scalar(
        select(func.coalesce(TrainingJob.epoch, 0)).where(*_fence(job_id, attempt, EpochRecords()))
    )
    session.rollback()
    if stored_epoch is None:
        raise StaleAttempt(f"job {job_id} is no longer running as attempt {attempt}")
    raise HistoryGap(job_id, stored_epoch)


def _record_in_one_transaction(
    session: Session,
    job_id: int,
    attempt: int,
    batch: EpochRecords,
    checkpoint: Checkpoint | None,
) -> bool | None:
    """The portable flush (SQLite): fenced UPDATE, multi-row INSERT, checkpoint, commit."""
    cancel_requested = session.execute(
        update(TrainingJob)
        .where(*_fence(job_id, attempt, batch))
        .values(**_progress_values(batch, checkpoint))
        .returning(TrainingJob.cancel_requested)
    ).scalar()
    if cancel_requested is None:
        return None
    if batch:
        session.execute(insert(EpochMetric), [_epoch_row(job_id, record) for record in batch])
    if checkpoint is not None:
        session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id == job_id))
        session.add(_checkpoint_row(job_id, attempt, checkpoint))
    session.commit()
    return cancel_requested


def _checkpoint_row(job_id: int, attempt: int, checkpoint: Checkpoint) -> JobCheckpoint:
    return JobCheckpoint(
        job_id=job_id,
        attempt=attempt,
        epoch=checkpoint.epoch,
        blob=checkpoint.blob,
        stored_bytes=len(checkpoint.blob),
    )


def _flush_sql(with_checkpoint: bool) -> TextClause:
    """The PostgreSQL flush as one statement of data-modifying CTEs: the fenced UPDATE (latest
    figures, lease, checkpoint epoch), the epoch rows (one INSERT of ``unnest``ed arrays) and
    the checkpoint (an upsert), each only if the fence let the UPDATE through. Its text is the
    same whatever the batch size, so it is parsed once and stays a prepared statement."""
    figures = ", ".join(f"{name} = :last_{name}" for name in EPOCH_FIGURES)
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in EPOCH_ROW_TYPES.items())
    checkpoint_epoch = ", checkpoint_epoch = :checkpoint_epoch" if with_checkpoint else ""
    checkpoint = """,
    checkpoint AS (
        INSERT INTO job_checkpoints (job_id, attempt, epoch, blob, stored_bytes, saved_at)
        SELECT job.id, :attempt, :checkpoint_epoch, :blob, :stored_bytes, :saved_at FROM job
        ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt, epoch = excluded.epoch,
            blob = excluded.blob, stored_bytes = excluded.stored_bytes,
            saved_at = excluded.saved_at
    )"""
    return text(
        f"""
    WITH job AS (
        UPDATE training_jobs
        SET epoch = :last_epoch, {figures},
            lease_expires_at = COALESCE(:lease_expires_at, lease_expires_at){checkpoint_epoch}
        WHERE id = :job_id AND attempt = :attempt AND status = :running
            AND COALESCE(epoch, 0) = :after_epoch
            AND set_config('synchronous_commit', :synchronous_commit, true) IS NOT NULL
        RETURNING id, cancel_requested
    ),
    epoch_rows AS (
        INSERT INTO epoch_metrics (job_id, {", ".join(EPOCH_ROW_TYPES)})
        SELECT job.id, batch.* FROM job, unnest({arrays}) AS batch
    ){checkpoint if with_checkpoint else ""}
    SELECT cancel_requested FROM job"""
    ).bindparams(bindparam("lease_expires_at", type_=UtcDateTime))


EPOCH_ROW_TYPES = {
    "epoch": "integer",
    **{name: "float8" for name in (*EPOCH_FIGURES, "learning_rate", "seconds")},
}
FLUSH = {False: _flush_sql(False), True: _flush_sql(True)}


def _record_in_one_statement(
    session: Session,
    job_id: int,
    attempt: int,
    batch: EpochRecords,
    checkpoint: Checkpoint | None,
) -> bool | None:
    """The PostgreSQL flush (``FLUSH``), run in autocommit: one round trip. An asynchronous
    batch commits with ``synchronous_commit = off``, set for its own transaction by
    ``set_config`` inside the statement (``SET LOCAL`` would cost a round trip)."""
    latest = latest_metrics(batch[-1])
    lease = batch.lease_seconds
    parameters = {
        "job_id": job_id,
        "attempt": attempt,
        "running": JobStatus.RUNNING.value,
        "after_epoch": batch[0]["epoch"] - 1,
        "synchronous_commit": "on" if batch.synchronous else "off",
        "lease_expires_at": None if lease is None else utcnow() + timedelta(seconds=lease),
        "last_epoch": latest["epoch"],
        **{f"last_{name}": latest[name] for name in EPOCH_FIGURES},
        **{name: [record[name] for record in batch] for name in EPOCH_ROW_TYPES},
    }
    if checkpoint is not None:
        parameters.update(
            checkpoint_epoch=checkpoint.epoch,
            blob=checkpoint.blob,
            stored_bytes=len(checkpoint.blob),
            saved_at=utcnow(),
        )
    connection = session.connection(
        execution_options={} if session.in_transaction() else {"isolation_level": "AUTOCOMMIT"}
    )
    cancel_requested = connection.execute(FLUSH[checkpoint is not None], parameters).scalar()
    session.commit()
    return cancel_requested


def stored_epoch(session: Session, job_id: int) -> int:
    """The last epoch of the job's stored history (its ``epoch``: moved with each batch)."""
    return session.scalar(
        select(func.coalesce(TrainingJob.epoch, 0)).where(TrainingJob.id == job_id)
    )


def end_attempt(
    session: Session,
    job_id: int,
    attempt: int,
    records: Sequence[Mapping[str, Any]],
    status: JobStatus,
    error: str | None = None,
    model: TrainedModel | None = None,
) -> sweeps.Advance:
    """Write the last epoch records, the model if any (the next version of its name, when it
    has one) and the final ``status`` together; for a sweep's trial, queue its next trials (or
    end the sweep) in the same transaction, and return what that did.

    The history is kept whatever the status; the checkpoint, no longer needed, is deleted.
    The ``job.finished`` event (and ``model.version.created`` for a named model) is committed
    with the ending.
    A trial locks its sweep's row before its own, in the order ``cancel_sweep`` takes them, so
    that the two cannot deadlock on PostgreSQL.
    """
    tenant, sweep_id = session.execute(
        select(TrainingJob.tenant, TrainingJob.sweep_id).where(TrainingJob.id == job_id)
    ).one()
    if sweep_id is not None:
        sweeps.lock_running(session, sweep_id)
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
        if model.name is not None:
            model.version = registry.next_version(session, model.tenant, model.name)
        session.add(model)
        session.flush()
        if model.name is not None:
            webhooks.record_version_created(session, model)
    model_id = model and model.id
    webhooks.record_job_finished(session, tenant, job_id, status, error, model_id, sweep_id)
    advanced = sweeps.Advance() if sweep_id is None else sweeps.advance(session, sweep_id)
    session.commit()
    return advanced


def record_rung(session: Session, job_id: int, attempt: int, rungs: list[dict]) -> None:
    """Store the trial's rung decisions (early termination), fenced by ``attempt``; commit."""
    _update_running_job(session, job_id, attempt, rungs=rungs)
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
    return {
        "job_id": job_id,
        **latest_metrics(record),
        "learning_rate": record["learning_rate"],
        "seconds": record["seconds"],
    }
