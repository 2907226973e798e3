"""Running one training job: claim it, train with model_core, write history and the model.

Epoch records are written in batches (at most every ``flush_seconds``, and at the end), so a
5,000-epoch job is not dominated by database round trips. Every write is fenced by the attempt
number the claim returned.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from model_core import ModelCoreError, TrainResult, train
from service.caching import LruCache
from service.db import queries
from service.db.models import Dataset, JobStatus, Model, TrainingJob

logger = logging.getLogger(__name__)

RECORD_FIELDS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "seconds")


def plain_record(record: dict[str, Any]) -> dict[str, Any]:
    """An epoch record with Python numbers only (drivers do not take numpy scalars)."""
    values = {key: None if record[key] is None else float(record[key]) for key in RECORD_FIELDS}
    return {"epoch": int(record["epoch"]), **values}


class EpochRecorder:
    """The ``on_epoch`` callback: buffers records, writes them every ``flush_seconds`` at most."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        job_id: int,
        attempt: int,
        flush_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.sessions = sessions
        self.job_id = job_id
        self.attempt = attempt
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.pending: list[dict[str, Any]] = []
        self.flushed_at = clock()

    def __call__(self, record: dict[str, Any]) -> bool:
        self.pending.append(plain_record(record))
        if self.clock() - self.flushed_at >= self.flush_seconds:
            self.flush()
        return False

    def flush(self) -> None:
        with self.sessions() as session:
            queries.add_epochs(session, self.job_id, self.attempt, self.pending)
        self.pending = []
        self.flushed_at = self.clock()


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


@dataclass(frozen=True)
class TrainingInput:
    job: TrainingJob
    dataset: Dataset
    network: dict
    x: np.ndarray
    y: np.ndarray


def load_job(sessions: sessionmaker[Session], job_id: int, cache: ArraysCache) -> TrainingInput:
    """The job, its data set, the full network spec and the arrays, in one short transaction."""
    with sessions() as session:
        job = queries.get_job(session, job_id)
        dataset = job.dataset
        x, y = cache.get(dataset.id, lambda: queries.get_dataset_arrays(session, dataset.id))
        return TrainingInput(job, dataset, job.engine_network(), x, y)


def run_training(
    sessions: sessionmaker[Session],
    job_id: int,
    flush_seconds: float = 0.5,
    cache: ArraysCache | None = None,
) -> JobStatus | None:
    """Train job ``job_id`` once and return its final status.

    ``cache`` keeps data set arrays between jobs of one process (none by default).
    Returns None without training when the job is not queued (it was claimed by another
    delivery, or finished). A ``ModelCoreError`` (bad spec or data, divergence) fails the job
    with its message; anything else fails it too and is re-raised for the worker's log.
    """
    with sessions() as session:
        attempt = queries.claim_job(session, job_id)
    if attempt is None:
        logger.info("job %s is not queued; nothing to do", job_id)
        return None
    recorder = EpochRecorder(sessions, job_id, attempt, flush_seconds)
    try:
        given = load_job(sessions, job_id, cache or arrays_cache(0))
        result = train(
            given.x,
            given.y,
            given.network,
            given.job.training,
            task=given.dataset.task.value,
            on_epoch=recorder,
        )
    except ModelCoreError as error:
        return close_failed(sessions, recorder, str(error))
    except Exception as error:
        close_failed(sessions, recorder, f"internal error: {type(error).__name__}: {error}")
        raise
    with sessions() as session:
        model = model_row(given.job, given.dataset, result)
        queries.finish_job(session, job_id, attempt, recorder.pending, model)
    logger.info("job %s succeeded after %d epochs", job_id, len(result.history))
    return JobStatus.SUCCEEDED


def close_failed(
    sessions: sessionmaker[Session], recorder: EpochRecorder, message: str
) -> JobStatus:
    """Mark the attempt failed with ``message``, keeping the epochs it recorded."""
    with sessions() as session:
        queries.fail_job(session, recorder.job_id, recorder.attempt, recorder.pending, message)
    logger.warning("job %s failed: %s", recorder.job_id, message)
    return JobStatus.FAILED
