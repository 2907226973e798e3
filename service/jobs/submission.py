"""Submitting, checking and cancelling training jobs.

A submission is stored before anything is published (an outbox): the job is committed as queued
with ``dispatched_at`` NULL, then sent to the broker once; when the broker refuses, the job stays
queued and the worker side's dispatcher sends it when the broker is back. The broker never
fails a submission.
"""

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from model_core import ResolvedSpec, SpecError, resolve_spec
from service.db import job_requests, queries
from service.db.models import Dataset, JobStatus, TrainingJob, utcnow
from service.ingest import DataError
from service.queue import JobQueue
from service.settings import Settings

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
# A cancel that loses a race (a worker claimed the queued job meanwhile) reads the job again.
CANCEL_TRIES = 3


class IdempotencyMismatch(DataError):
    """The idempotency key already names a job submitted with a different body."""

    def __init__(self):
        super().__init__(
            IDEMPOTENCY_HEADER, "already used for a different request body; send a new key"
        )


class NotCancellable(Exception):
    """The job is not queued or running (any more)."""


@dataclass(frozen=True)
class SpecReport:
    """The outcome of a dry run: errors keyed by field path, warnings, resolved specs."""

    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    network: dict | None = None
    training: dict | None = None

    @property
    def valid(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's key for one submission, the hash of its body, and when keys older expire."""

    key: str
    request_hash: str
    created_after: datetime


@dataclass(frozen=True)
class Submission:
    """The job a submission stands for; ``replayed`` when an earlier request created it."""

    job: TrainingJob
    replayed: bool = False


def plain_json(value: Any) -> Any:
    """``value`` with numpy arrays and scalars turned into lists and numbers, for JSON columns.

    model_core's resolved network holds ``initial_weights`` as arrays.
    """
    if isinstance(value, dict):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(item) for item in value]
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value


def split_network(network: dict) -> tuple[dict, list | None]:
    """The resolved network spec without its initial weights, and the weights as lists.

    Weights can be megabytes: they are stored apart and not echoed back.
    """
    plain = plain_json(network)
    return plain, plain.pop("initial_weights", None)


def check_max_seconds(value: Any, settings: Settings) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError("training.max_seconds", "must be a number of seconds")
    if not 0 < value <= settings.max_job_seconds:
        raise DataError(
            "training.max_seconds",
            f"must be > 0 and <= {settings.max_job_seconds} (MAX_JOB_SECONDS)",
        )


def check_checkpoint_every_epochs(value: Any, _settings: Settings) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError("training.checkpoint_every_epochs", "must be an integer >= 1")


def check_checkpoint_every_seconds(value: Any, _settings: Settings) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise DataError("training.checkpoint_every_seconds", "must be a number of seconds > 0")


# Fields of the training spec that belong to the service, not to model_core (which refuses keys
# it does not know): checked here, stored with the job, and popped again by the worker.
SERVICE_TRAINING_FIELDS = {
    "max_seconds": check_max_seconds,
    "checkpoint_every_epochs": check_checkpoint_every_epochs,
    "checkpoint_every_seconds": check_checkpoint_every_seconds,
}


def engine_training(training: dict) -> dict:
    """The part of a job's training spec that model_core takes (not the service's own fields)."""
    return {key: value for key, value in training.items() if key not in SERVICE_TRAINING_FIELDS}


def split_training(training: dict, settings: Settings) -> tuple[dict, dict]:
    """model_core's training spec, and the checked service fields; raises ``DataError``."""
    own = {key: value for key, value in training.items() if key in SERVICE_TRAINING_FIELDS}
    for key, value in own.items():
        SERVICE_TRAINING_FIELDS[key](value, settings)
    return engine_training(training), own


def count_parameters(network: dict, n_features: int) -> int:
    """Weights and biases of the network: sum over layers of (inputs + 1) x units."""
    total, fan_in = 0, n_features
    for layer in network["layers"]:
        total += (fan_in + 1) * layer["units"]
        fan_in = layer["units"]
    return total


def check_size(network: dict, n_features: int, max_parameters: int) -> None:
    """A network too large to train here is refused before it can exhaust a worker's memory
    (and be retried as a poison job)."""
    count = count_parameters(network, n_features)
    if count > max_parameters:
        raise DataError(
            "network.layers",
            f"has {count} parameters; the limit is {max_parameters} (MAX_PARAMETERS)",
        )


def find_dataset(session: Session, dataset_id: int) -> Dataset:
    """The data set a job names; a missing one is a problem with the request body."""
    dataset = queries.get_dataset(session, dataset_id)
    if dataset is None:
        raise DataError("dataset_id", f"no data set with id {dataset_id}")
    return dataset


def resolve_for(dataset: Dataset, network: dict, training: dict) -> ResolvedSpec:
    """model_core's check of both specs against the data set's shape; raises ``SpecError``."""
    return resolve_spec(
        network,
        training,
        task=dataset.task.value,
        n_features=dataset.n_features,
        n_outputs=dataset.n_outputs,
        n_samples=dataset.n_samples,
    )


@dataclass(frozen=True)
class ResolvedJob:
    """A job's data set and specs with every default filled in, ready to store."""

    dataset: Dataset
    network: dict
    initial_weights: list | None
    training: dict
    warnings: list[str]


def resolve_job(
    session: Session, settings: Settings, dataset_id: int, network: dict, training: dict
) -> ResolvedJob:
    """Check a submission against its data set; raises ``DataError`` or ``SpecError``."""
    dataset = find_dataset(session, dataset_id)
    engine_spec, own = split_training(training, settings)
    resolved = resolve_for(dataset, network, engine_spec)
    check_size(resolved.network, dataset.n_features, settings.max_parameters)
    resolved_network, initial_weights = split_network(resolved.network)
    return ResolvedJob(
        dataset,
        resolved_network,
        initial_weights,
        {**plain_json(resolved.training), **own},
        resolved.warnings,
    )


def check_job(session: Session, settings: Settings, **body: Any) -> SpecReport:
    """A dry run of ``submit_job``: what would be wrong, and the specs with their defaults."""
    try:
        resolved = resolve_job(session, settings, **body)
    except (DataError, SpecError) as error:
        return SpecReport(errors={error.path: [error.message]})
    return SpecReport(
        warnings=resolved.warnings, network=resolved.network, training=resolved.training
    )


def with_seed(training: dict) -> dict:
    """The training spec with a fixed seed, drawn now when none is given, so a job can be rerun
    (or resumed) to the same weights."""
    if training.get("seed") is not None:
        return training
    return {**training, "seed": secrets.randbelow(2**31)}


def new_job(resolved: ResolvedJob) -> TrainingJob:
    return TrainingJob(
        dataset_id=resolved.dataset.id,
        network=resolved.network,
        initial_weights=resolved.initial_weights,
        training=with_seed(resolved.training),
        warnings=resolved.warnings,
        epochs=resolved.training["epochs"],
    )


def request_hash(body: dict) -> str:
    """SHA-256 of the body as canonical JSON (sorted keys, no spaces): equal bodies, equal hash."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key(key: str | None, body: dict, ttl_seconds: int) -> IdempotencyKey | None:
    """The submission's key, or None when the client sent no ``Idempotency-Key``."""
    if key is None:
        return None
    return IdempotencyKey(key, request_hash(body), utcnow() - timedelta(seconds=ttl_seconds))


def replay(job: TrainingJob, key: IdempotencyKey) -> Submission:
    """The earlier job of this key, when it was submitted with the same body."""
    if job.request_hash != key.request_hash:
        raise IdempotencyMismatch()
    return Submission(job, replayed=True)


def store_job(session: Session, job: TrainingJob, key: IdempotencyKey | None) -> None:
    """Insert and commit ``job``, taking ``key`` over from an expired job in the same
    transaction; raises ``IntegrityError`` when a live job holds the key."""
    if key is not None:
        job.idempotency_key, job.request_hash = key.key, key.request_hash
        job_requests.release_expired_key(session, key.key, key.created_after)
    queries.add(session, job)


def store_or_replay(session: Session, job: TrainingJob, key: IdempotencyKey | None) -> Submission:
    """Store ``job``; when a concurrent request with the same key won the unique index, that
    request's job."""
    try:
        store_job(session, job, key)
    except IntegrityError:
        session.rollback()
        winner = key and job_requests.find_job_by_key(session, key.key, key.created_after)
        if winner is None:
            raise
        return replay(winner, key)
    return Submission(job)


def dispatch(session: Session, queue: JobQueue, job_id: int) -> None:
    """Publish a stored job once and mark it dispatched. When that fails (the broker is down),
    the job stays queued with ``dispatched_at`` NULL, for the dispatcher to send later."""
    try:
        queue.enqueue_training(job_id)
        queries.mark_dispatched(session, job_id)
    except Exception as error:  # kombu, redis and SQLAlchemy each raise their own types
        session.rollback()
        logger.warning("job %s stays queued for the dispatcher: %s", job_id, error)


def submit_job(
    session: Session,
    queue: JobQueue,
    settings: Settings,
    key: IdempotencyKey | None,
    body: dict,
) -> Submission:
    """Store a queued job with its resolved specs, commit, and only then try to publish it; or
    the earlier job of the same idempotency key. Raises ``DataError`` or ``SpecError``."""
    earlier = key and job_requests.find_job_by_key(session, key.key, key.created_after)
    if earlier:
        return replay(earlier, key)
    job = new_job(resolve_job(session, settings, **body))
    submission = store_or_replay(session, job, key)
    if not submission.replayed:
        dispatch(session, queue, submission.job.id)
    return submission


CANCELLERS = {
    JobStatus.QUEUED: job_requests.cancel_queued_job,
    JobStatus.RUNNING: job_requests.request_cancel,
}


def cancel_job(session: Session, job: TrainingJob) -> TrainingJob:
    """Cancel a queued job at once, or ask a running one to stop at its next epoch boundary.

    Returns the job as it is afterwards; raises ``NotCancellable`` for a finished job.
    """
    for _ in range(CANCEL_TRIES):
        cancel = CANCELLERS.get(job.status)
        if cancel is None:
            raise NotCancellable(
                f"Job {job.id} is finished ({job.status}); only queued or running jobs can be"
                " cancelled."
            )
        cancelled = cancel(session, job.id)
        session.refresh(job)
        if cancelled:
            return job
    raise NotCancellable(f"Job {job.id} kept changing state while cancelling it; try again.")
