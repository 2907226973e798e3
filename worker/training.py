"""Running one attempt of a training job: claim it under a lease, train, write history, end it.

Epoch records are written in batches (at most every ``metrics_flush_seconds``, and at the end),
so a 5,000-epoch job is not dominated by database round trips. A flush carries a checkpoint when
one is due (every ``checkpoint_every_epochs`` epochs or ``checkpoint_every_seconds`` seconds,
whichever comes first, and at most one per flush), and brings back the job's cancel flag. Every
write is fenced by the attempt number the claim returned; a heartbeat thread renews the lease.
An attempt that resumes a job continues from its checkpoint and writes each later epoch once.
"""

import enum
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from model_core import ModelCoreError, Trainer, TrainResult
from service.caching import LruCache
from service.db import queries
from service.db.models import Dataset, JobStatus, Model, TrainingJob
from service.settings import Settings
from worker import faults
from worker.lease import Heartbeat
from worker.retries import is_transient, retry_transient

logger = logging.getLogger(__name__)

RECORD_FIELDS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "seconds")


def plain_record(record: dict[str, Any]) -> dict[str, Any]:
    """An epoch record with Python numbers only (drivers do not take numpy scalars)."""
    values = {key: None if record[key] is None else float(record[key]) for key in RECORD_FIELDS}
    return {"epoch": int(record["epoch"]), **values}


class Stop(enum.Enum):
    """Why an attempt stopped before its last epoch (an ending other than success)."""

    CANCELLED = "cancelled"
    TIME_LIMIT = "time limit"
    LEASE_LOST = "lease lost"


@dataclass(frozen=True)
class RecordingPolicy:
    """How often to write and checkpoint, and how long the job may train (seconds of epochs,
    summed over every attempt)."""

    flush_seconds: float
    checkpoint_every_epochs: int
    checkpoint_every_seconds: float
    max_seconds: float


class EpochRecorder:
    """The ``on_epoch`` callback: buffers records, writes them (with a checkpoint when due) every
    ``flush_seconds`` at most, and says when to stop: a cancel, the time limit, a lost lease.

    A flush that meets a transient database error keeps its records for the next one.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        job_id: int,
        attempt: int,
        policy: RecordingPolicy,
        lease_lost: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.sessions = sessions
        self.job_id = job_id
        self.attempt = attempt
        self.policy = policy
        self.lease_lost = lease_lost
        self.clock = clock
        self.pending: list[dict[str, Any]] = []
        self.stop: Stop | None = None
        self.snapshot: Callable[[], bytes] | None = None
        self.epoch = self.checkpointed_epoch = 0
        self.trained_seconds = 0.0
        self.flushed_at = self.checkpointed_at = clock()

    def follow(self, trainer: Trainer) -> None:
        """Checkpoint ``trainer``, counting from the state it resumed (if any)."""
        self.snapshot = trainer.checkpoint
        self.epoch = self.checkpointed_epoch = trainer.epoch
        self.trained_seconds = sum(record["seconds"] for record in trainer.history)

    def __call__(self, record: dict[str, Any]) -> bool:
        self.pending.append(plain_record(record))
        self.epoch = record["epoch"]
        self.trained_seconds += record["seconds"]
        if self.lease_lost.is_set():
            self.stop = Stop.LEASE_LOST
        elif self.trained_seconds > self.policy.max_seconds:
            self.stop = Stop.TIME_LIMIT
        elif self.clock() - self.flushed_at >= self.policy.flush_seconds:
            self.flush()
        return self.stop is not None

    def flush(self) -> None:
        checkpoint = self._due_checkpoint()
        try:
            with self.sessions() as session:
                cancel_requested = queries.record_progress(
                    session, self.job_id, self.attempt, self.pending, checkpoint
                )
        except queries.StaleAttempt:
            self.stop = Stop.LEASE_LOST
            return
        except DBAPIError as error:
            if not is_transient(error):
                raise
            logger.warning(
                "job %s: cannot write yet (%s); keeping %d epoch records",
                self.job_id,
                error.orig,
                len(self.pending),
            )
            self.flushed_at = self.clock()
            return
        self.pending = []
        self.flushed_at = self.clock()
        if checkpoint is not None:
            self.checkpointed_epoch, self.checkpointed_at = checkpoint.epoch, self.flushed_at
        if cancel_requested:
            self.stop = Stop.CANCELLED

    def _due_checkpoint(self) -> queries.Checkpoint | None:
        due = (
            self.epoch - self.checkpointed_epoch >= self.policy.checkpoint_every_epochs
            or self.clock() - self.checkpointed_at >= self.policy.checkpoint_every_seconds
        )
        if not due or self.snapshot is None or self.epoch == self.checkpointed_epoch:
            return None
        return queries.Checkpoint(self.epoch, self.snapshot())

    def time_limit_message(self, epochs: int) -> str:
        return (
            f"exceeded training.max_seconds={self.policy.max_seconds:g}: stopped after epoch "
            f"{self.epoch} of {epochs} ({self.trained_seconds:.1f} s of training)"
        )


def final_metrics(result: TrainResult) -> dict[str, Any]:
    """What the model shows about its training: the last epoch's figures and how it ended."""
    last = plain_record(result.history[-1]) if result.history else {}
    return {
        **{key: last.get(key) for key in RECORD_FIELDS if key != "seconds"},
        "epochs_trained": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds": sum(record["seconds"] for record in result.history),
    }


def model_row(job: TrainingJob, dataset: Dataset, result: TrainResult) -> Model:
    classes = result.model.classes
    return Model(
        job_id=job.id,
        dataset_id=dataset.id,
        task=dataset.task,
        n_features=dataset.n_features,
        network=job.network,
        training=job.training,
        classes=None if classes is None else np.asarray(classes).tolist(),
        metrics=final_metrics(result),
        blob=result.model.to_bytes(),
    )


ArraysCache = LruCache[int, tuple[np.ndarray, np.ndarray]]


def arrays_cache(max_bytes: int) -> ArraysCache:
    """Data set arrays kept by a worker process: data sets never change once uploaded and ids
    are never reused, so a sweep of jobs on one data set reads it from the database once."""
    return LruCache(max_bytes, size_of=lambda arrays: arrays[0].nbytes + arrays[1].nbytes)


# Keys of ``job.training`` that the service enforces itself; model_core refuses unknown keys.
SERVICE_TRAINING_KEYS = ("max_seconds",)


@dataclass(frozen=True)
class TrainingInput:
    job: TrainingJob
    dataset: Dataset
    network: dict
    training: dict
    x: np.ndarray
    y: np.ndarray
    checkpoint: bytes | None


def load_job(
    sessions: sessionmaker[Session], job_id: int, cache: ArraysCache, resume_epoch: int
) -> TrainingInput:
    """The job, its data set, the specs for model_core, the arrays and (when resuming) the
    checkpoint, in one short transaction."""
    with sessions() as session:
        job = queries.get_job(session, job_id)
        dataset = job.dataset
        x, y = cache.get(dataset.id, lambda: queries.get_dataset_arrays(session, dataset.id))
        checkpoint = queries.get_checkpoint(session, job_id) if resume_epoch else None
        training = {k: v for k, v in job.training.items() if k not in SERVICE_TRAINING_KEYS}
        return TrainingInput(job, dataset, job.engine_network(), training, x, y, checkpoint)


DEFAULT_SETTINGS = Settings()


def lease_owner() -> str:
    """Who holds a lease: this host and process (the process a test SIGKILLs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def recording_policy(settings: Settings, training: dict) -> RecordingPolicy:
    return RecordingPolicy(
        flush_seconds=settings.metrics_flush_seconds,
        checkpoint_every_epochs=settings.checkpoint_every_epochs,
        checkpoint_every_seconds=settings.checkpoint_every_seconds,
        max_seconds=training.get("max_seconds") or settings.max_job_seconds,
    )


def run_training(
    sessions: sessionmaker[Session],
    job_id: int,
    settings: Settings = DEFAULT_SETTINGS,
    cache: ArraysCache | None = None,
) -> JobStatus | None:
    """Train job ``job_id`` for one attempt and return how the attempt ended.

    ``cache`` keeps data set arrays between jobs of one process (none by default).
    Returns None without training when the job is not claimable (another delivery holds it, or
    it finished), and None when the attempt lost its lease (another attempt owns the job now).
    A ``ModelCoreError`` (bad spec or data, divergence) fails the job with its message; anything
    else fails it too and is re-raised for the worker's log.
    """
    claim = retry_transient(lambda: claim_job(sessions, job_id, settings), f"job {job_id}: claim")
    if claim is None:
        logger.info("job %s is not claimable; nothing to do", job_id)
        return None
    heartbeat = Heartbeat(
        sessions, job_id, claim.attempt, settings.lease_seconds, settings.heartbeat_seconds
    )
    with heartbeat:
        return train_attempt(sessions, job_id, claim, settings, cache, heartbeat.lost)


def claim_job(sessions: sessionmaker[Session], job_id: int, settings: Settings) -> queries.Claim:
    with sessions() as session:
        return queries.claim_job(
            session, job_id, lease_owner(), settings.lease_seconds, settings.max_attempts
        )


def train_attempt(
    sessions: sessionmaker[Session],
    job_id: int,
    claim: queries.Claim,
    settings: Settings,
    cache: ArraysCache | None,
    lease_lost: threading.Event,
) -> JobStatus | None:
    recorder: EpochRecorder | None = None
    try:
        given = retry_transient(
            lambda: load_job(sessions, job_id, cache or arrays_cache(0), claim.resume_epoch),
            f"job {job_id}: load",
        )
        faults.die_if_poisoned(given.dataset.name)
        policy = recording_policy(settings, given.job.training)
        recorder = EpochRecorder(sessions, job_id, claim.attempt, policy, lease_lost)
        trainer = Trainer(
            given.x,
            given.y,
            given.network,
            given.training,
            task=given.dataset.task.value,
            resume_from=given.checkpoint,
        )
        recorder.follow(trainer)
        result = trainer.fit(recorder)
    except ModelCoreError as error:
        return end_attempt(sessions, job_id, claim.attempt, recorder, JobStatus.FAILED, str(error))
    except Exception as error:
        message = f"internal error: {type(error).__name__}: {error}"
        end_attempt(sessions, job_id, claim.attempt, recorder, JobStatus.FAILED, message)
        raise
    return conclude(sessions, given, recorder, result)


def conclude(
    sessions: sessionmaker[Session],
    given: TrainingInput,
    recorder: EpochRecorder,
    result: TrainResult,
) -> JobStatus | None:
    """End the attempt as its recorder says: succeeded with the model, cancelled, failed on
    the time limit, or (the lease lost) not at all."""
    job_id, attempt = given.job.id, recorder.attempt
    if recorder.stop is Stop.LEASE_LOST:
        logger.warning("job %s: attempt %s stopped, its lease lost; wrote nothing", job_id, attempt)
        return None
    if recorder.stop is Stop.CANCELLED:
        return end_attempt(sessions, job_id, attempt, recorder, JobStatus.CANCELLED)
    if recorder.stop is Stop.TIME_LIMIT:
        message = recorder.time_limit_message(given.training["epochs"])
        return end_attempt(sessions, job_id, attempt, recorder, JobStatus.FAILED, message)
    model = model_row(given.job, given.dataset, result)
    status = end_attempt(sessions, job_id, attempt, recorder, JobStatus.SUCCEEDED, model=model)
    if status is JobStatus.SUCCEEDED:
        logger.info("job %s succeeded after %d epochs", job_id, len(result.history))
    return status


def end_attempt(
    sessions: sessionmaker[Session],
    job_id: int,
    attempt: int,
    recorder: EpochRecorder | None,
    status: JobStatus,
    error: str | None = None,
    model: Model | None = None,
) -> JobStatus | None:
    """Write the attempt's last records and its final ``status`` (retrying a database that is
    away); None when the attempt turns out to be stale."""
    records = recorder.pending if recorder else []

    def write() -> None:
        with sessions() as session:
            queries.end_attempt(session, job_id, attempt, records, status, error, model)

    try:
        retry_transient(write, f"job {job_id}: end as {status}")
    except queries.StaleAttempt:
        logger.warning("job %s: attempt %s is stale; its ending is not written", job_id, attempt)
        return None
    if status is not JobStatus.SUCCEEDED:
        logger.warning("job %s %s: %s", job_id, status, error or "")
    return status
