"""Running one attempt of a training job: claim it under a lease, train, write history, end it.

Every write is fenced by the attempt number the claim returned; a heartbeat thread renews the
lease (worker/lease.py) and the epoch recorder writes history and checkpoints
(worker/recorder.py). An attempt that resumes a job continues from its checkpoint and writes
each later epoch once. Ending a sweep's trial queues the sweep's next trials in the same
transaction; they are published right after (or by the dispatcher, when that fails).
"""

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np
from celery.utils.dispatch import Signal
from sqlalchemy.orm import Session, sessionmaker

from model_core import Model, ModelCoreError, Trainer, TrainResult
from model_core.preprocessing import feature_statistics
from service.broker import JobQueue
from service.caching import LruCache
from service.db import attempts, dispatch, records, sweeps
from service.db.models import Dataset, TrainedModel, TrainingJob
from service.generation import generation_for
from service.jobs.specs import StoredSpecs, stored_specs
from service.logs import request_id_set
from service.serving.drift import reference_profile, reference_to_npz
from service.settings import Settings
from service.signatures import model_signature, output_signature
from service.sweeps.asha import asha_for
from service.vocabulary import EPOCH_FIGURES, JobStatus
from worker.lease import Heartbeat
from worker.recorder import (
    EarlyTermination,
    EpochRecorder,
    RecordingPolicy,
    Stop,
    plain_record,
)
from worker.retries import retry_transient

logger = logging.getLogger(__name__)


def final_metrics(result: TrainResult) -> dict[str, Any]:
    """What the model shows about its training: the last epoch's figures and how it ended."""
    last = plain_record(result.history[-1]) if result.history else {}
    return {
        **{name: last.get(name) for name in EPOCH_FIGURES},
        "epochs_trained": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds": sum(record["seconds"] for record in result.history),
    }


def model_row(given: "TrainingInput", result: TrainResult, train_rows: np.ndarray) -> TrainedModel:
    job, dataset, model = given.job, given.dataset, result.model
    blob = model.to_bytes()
    reference = reference_to_npz(reference_profile(model, given.arrays.x[train_rows]))
    return TrainedModel(
        tenant=job.tenant,
        job_id=job.id,
        dataset_id=dataset.id,
        task=dataset.task,
        n_features=dataset.n_features,
        network=job.network,
        training=job.training,
        classes=None if model.classes is None else np.asarray(model.classes).tolist(),
        metrics=final_metrics(result),
        signature=trained_signature(given, model, train_rows),
        blob=blob,
        reference=reference,
        stored_bytes=len(blob) + len(reference),
        name=job.model_name,
        parent_model_id=job.network.get("init_from"),
    )


def trained_signature(given: "TrainingInput", model: Model, train_rows: np.ndarray) -> dict:
    """The model's contract: the data set's feature and target names, the classes in output
    order, and the profile of the raw rows it trained on."""
    dataset = given.dataset
    outputs = output_signature(model.task, model.classes, dataset.target_names, model.n_outputs)
    return model_signature(
        model.task,
        dataset.feature_names,
        model.n_features,
        model.dtype.name,
        outputs,
        feature_statistics(given.arrays.x, train_rows),
    )


ArraysCache = LruCache[int, records.DatasetArrays]


def arrays_nbytes(arrays: records.DatasetArrays) -> int:
    return sum(array.nbytes for array in arrays if array is not None)


def arrays_cache(max_bytes: int) -> ArraysCache:
    """Data set arrays kept by a worker process: data sets never change once uploaded and ids
    are never reused, so a sweep of jobs on one data set reads it from the database once."""
    return LruCache(max_bytes, size_of=arrays_nbytes)


@dataclass(frozen=True)
class TrainingInput:
    job: TrainingJob
    dataset: Dataset
    specs: StoredSpecs
    arrays: records.DatasetArrays
    checkpoint: bytes | None
    early_termination: EarlyTermination | None = None
    init_from: Model | None = None


class DatasetDeleted(Exception):
    """The job's data set was deleted after the job was accepted: nothing to train on."""


class StartingModelDeleted(DatasetDeleted):
    """The model a fine-tuning job starts from was deleted after the job was accepted."""


def starting_model(session: Session, model_id: int | None) -> Model | None:
    """The trained model a job starts from (None: it starts from fresh weights)."""
    if model_id is None:
        return None
    blob = records.get_model_blob(session, model_id)
    if blob is None:
        raise StartingModelDeleted(
            f"network.init_from: model {model_id} was deleted before the job could train"
        )
    return Model.from_bytes(blob)


def load_job(
    sessions: sessionmaker[Session], job_id: int, cache: ArraysCache, resume_epoch: int
) -> TrainingInput:
    """The job, its data set, the specs for model_core, the arrays and (when resuming) the
    checkpoint, in one short transaction."""
    with sessions() as session:
        job = records.get_job(session, job_id)
        dataset = job.dataset
        if dataset is None:
            raise DatasetDeleted("the job's data set was deleted before it could train")
        arrays = cache.get(dataset.id, lambda: records.get_dataset_arrays(session, dataset.id))
        checkpoint = attempts.get_checkpoint(session, job_id) if resume_epoch else None
        specs = stored_specs(job)
        asha = asha_for(session, job)
        early = asha and EarlyTermination(asha, specs.training["epochs"], job.rungs or [])
        start = starting_model(session, specs.init_from)
        return TrainingInput(job, dataset, specs, arrays, checkpoint, early, start)


DEFAULT_SETTINGS = Settings()

# Sent in the training process once an attempt has claimed its job and loaded it, before its
# first epoch, with ``attempt`` (the claim's number) and ``given`` (its ``TrainingInput``): a
# place to watch attempts from outside the training path (a receiver's error is only logged).
attempt_started = Signal(name="attempt_started")


def lease_owner() -> str:
    """Who holds a lease: this host and process (the process a test SIGKILLs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def recording_policy(settings: Settings, service_fields: dict) -> RecordingPolicy:
    """The job's own checkpoint intervals and time limit where it sets them, else the settings'."""
    defaults = {
        "checkpoint_every_epochs": settings.checkpoint_every_epochs,
        "checkpoint_every_seconds": settings.checkpoint_every_seconds,
        "max_seconds": settings.max_job_seconds,
    }
    chosen = {key: service_fields.get(key) or default for key, default in defaults.items()}
    return RecordingPolicy(flush_seconds=settings.metrics_flush_seconds, **chosen)


def run_training(
    sessions: sessionmaker[Session],
    job_id: int,
    settings: Settings = DEFAULT_SETTINGS,
    cache: ArraysCache | None = None,
    queue: JobQueue | None = None,
) -> JobStatus | None:
    """Train job ``job_id`` for one attempt and return how the attempt ended.

    ``cache`` keeps data set arrays between jobs of one process (none by default); ``queue``
    publishes the sweep trials this one's end queues (without it, the dispatcher does).
    Returns None without training when the job is not claimable (another delivery holds it, or
    it finished), and None when the attempt lost its lease (another attempt owns the job now).
    A ``ModelCoreError`` (bad spec or data, divergence) or a deleted data set fails the job with
    its message; anything else fails it too and is re-raised for the worker's log.
    """
    claim = retry_transient(lambda: claim_job(sessions, job_id, settings), f"job {job_id}: claim")
    if claim is None:
        logger.info("job %s is not claimable; nothing to do", job_id)
        return None
    heartbeat = Heartbeat.of_job(
        sessions, job_id, claim.attempt, settings.lease_seconds, settings.heartbeat_seconds
    )
    ending = Ending(sessions, settings, queue)
    with request_id_set(claim.request_id), heartbeat:
        return train_attempt(ending, job_id, claim, cache, heartbeat)


def claim_job(
    sessions: sessionmaker[Session], job_id: int, settings: Settings
) -> attempts.Claim | None:
    with sessions() as session:
        return attempts.claim_job(
            session, job_id, lease_owner(), settings.lease_seconds, settings.max_attempts
        )


def train_attempt(
    ending: "Ending",
    job_id: int,
    claim: attempts.Claim,
    cache: ArraysCache | None,
    heartbeat: Heartbeat,
) -> JobStatus | None:
    sessions, settings = ending.sessions, ending.settings
    recorder: EpochRecorder | None = None
    try:
        given = retry_transient(
            lambda: load_job(sessions, job_id, cache or arrays_cache(0), claim.resume_epoch),
            f"job {job_id}: load",
        )
        attempt_started.send(sender=run_training, attempt=claim.attempt, given=given)
        policy = recording_policy(settings, given.specs.service_fields)
        recorder = EpochRecorder(
            sessions,
            job_id,
            claim.attempt,
            policy,
            heartbeat.lost,
            early_termination=given.early_termination,
            lease=heartbeat,
        )
        trainer = Trainer(
            given.arrays.x,
            given.arrays.y,
            given.specs.network,
            given.specs.training,
            task=given.dataset.task.value,
            resume_from=given.checkpoint,
            sample_weight=given.arrays.sample_weight,
            init_from=given.init_from,
            replace_output=given.specs.replace_output,
            threads=settings.train_threads,
        )
        recorder.follow(trainer)
        result = trainer.fit(recorder)
    except (ModelCoreError, DatasetDeleted) as error:
        return ending.end(job_id, claim.attempt, recorder, JobStatus.FAILED, str(error))
    except Exception as error:
        message = f"internal error: {type(error).__name__}: {error}"
        ending.end(job_id, claim.attempt, recorder, JobStatus.FAILED, message)
        raise
    return conclude(ending, given, recorder, result, trainer.train_rows)


# How an attempt ends for each reason its recorder stopped it (the lease lost: not at all).
STOP_STATUSES = {
    Stop.CANCELLED: JobStatus.CANCELLED,
    Stop.TIME_LIMIT: JobStatus.FAILED,
    Stop.PRUNED: JobStatus.PRUNED,
}


def conclude(
    ending: "Ending",
    given: TrainingInput,
    recorder: EpochRecorder,
    result: TrainResult,
    train_rows: np.ndarray,
) -> JobStatus | None:
    """End the attempt as its recorder says: succeeded with the model (profiled on its
    ``train_rows`` of the data set), cancelled, pruned, failed on the time limit, or (the lease
    lost) not at all."""
    job_id, attempt = given.job.id, recorder.attempt
    if recorder.stop is Stop.LEASE_LOST:
        logger.warning("job %s: attempt %s stopped, its lease lost; wrote nothing", job_id, attempt)
        return None
    if recorder.stop is not None:
        message = None
        if recorder.stop is Stop.TIME_LIMIT:
            message = recorder.time_limit_message(given.specs.training["epochs"])
        return ending.end(job_id, attempt, recorder, STOP_STATUSES[recorder.stop], message)
    model = model_row(given, result, train_rows)
    # Named by the job, not by its sweep on ending (``Ending`` announces that one).
    named = model.name is not None
    status = ending.end(job_id, attempt, recorder, JobStatus.SUCCEEDED, model=model)
    if status is JobStatus.SUCCEEDED:
        logger.info("job %s succeeded after %d epochs", job_id, len(result.history))
        if named:
            announce_version(ending.settings, model)
    return status


def announce_version(settings: Settings, model: TrainedModel) -> None:
    """Tell the API processes that ``model.name`` has a new latest version. When that fails they
    serve the previous one until their cached references age out (30 s); the model is stored."""
    try:
        generation_for(settings).bump()
    except Exception as error:  # redis and the file system each raise their own types
        logger.warning("%s:%s is stored but not announced: %s", model.name, model.version, error)
    else:
        logger.info("model %s is version %s of %s", model.id, model.version, model.name)


@dataclass(frozen=True)
class Ending:
    """Where an attempt's ending goes: the database, then (for a sweep's trial) the broker for
    the trials it queued, and the API processes when it ended a sweep with a registered model."""

    sessions: sessionmaker[Session]
    settings: Settings
    queue: JobQueue | None = None

    def end(
        self,
        job_id: int,
        attempt: int,
        recorder: EpochRecorder | None,
        status: JobStatus,
        error: str | None = None,
        model: TrainedModel | None = None,
    ) -> JobStatus | None:
        """Write the attempt's last records and its final ``status`` (retrying a database that
        is away); None when the attempt turns out to be stale."""

        def write() -> sweeps.Advance:
            with self.sessions() as session:
                records = recorder.unwritten(session) if recorder else []
                return attempts.end_attempt(session, job_id, attempt, records, status, error, model)

        try:
            advanced = retry_transient(write, f"job {job_id}: end as {status}")
        except attempts.StaleAttempt:
            logger.warning(
                "job %s: attempt %s is stale; its ending is not written", job_id, attempt
            )
            return None
        if status is not JobStatus.SUCCEEDED:
            logger.warning("job %s %s: %s", job_id, status, error or "")
        self.follow_up(advanced)
        return status

    def follow_up(self, advanced: sweeps.Advance) -> None:
        """Publish the trials queued, and announce the sweep's registered model."""
        if self.queue is not None:
            for job_id in advanced.job_ids:
                with self.sessions() as session:
                    dispatch.publish(session, self.queue, job_id)
        if advanced.registered is not None:
            announce_version(self.settings, advanced.registered)
