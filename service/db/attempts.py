"""Attempts: the life of one worker's try at a job (claim, lease, heartbeat, progress, end).

Every write made on behalf of an attempt is fenced by the job's ``attempt`` number: a worker whose
attempt is no longer current changes nothing (``StaleAttempt``).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from service.db import registry, sweeps
from service.db.models import EpochMetric, JobCheckpoint, TrainedModel, TrainingJob, utcnow
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
                job_id=job_id,
                attempt=attempt,
                epoch=checkpoint.epoch,
                blob=checkpoint.blob,
                stored_bytes=len(checkpoint.blob),
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
    model: TrainedModel | None = None,
) -> sweeps.Advance:
    """Write the last epoch records, the model if any (the next version of its name, when it
    has one) and the final ``status`` together; for a sweep's trial, queue its next trials (or
    end the sweep) in the same transaction, and return what that did.

    The history is kept whatever the status; the checkpoint, no longer needed, is deleted.
    A trial locks its sweep's row before its own, in the order ``cancel_sweep`` takes them, so
    that the two cannot deadlock on PostgreSQL.
    """
    sweep_id = session.scalar(select(TrainingJob.sweep_id).where(TrainingJob.id == job_id))
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
