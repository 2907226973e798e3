"""Submitting training jobs: check the specs against the data set, store, then enqueue."""

import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from model_core import ResolvedSpec, SpecError, resolve_spec
from service.db import queries
from service.db.models import Dataset, TrainingJob
from service.ingest import DataError
from service.queue import JobQueue


class QueueUnavailable(Exception):
    """The job was stored but the broker refused it; the job is marked failed."""


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


def check_job(session: Session, dataset_id: int, network: dict, training: dict) -> SpecReport:
    """A dry run of ``submit_job``: what would be wrong, and the specs with their defaults."""
    try:
        resolved = resolve_for(find_dataset(session, dataset_id), network, training)
    except DataError as error:
        return SpecReport(errors={error.field: [error.message]})
    except SpecError as error:
        return SpecReport(errors={error.path: [error.message]})
    network, _initial_weights = split_network(resolved.network)
    return SpecReport(
        warnings=resolved.warnings, network=network, training=plain_json(resolved.training)
    )


def with_seed(training: dict) -> dict:
    """The training spec with a fixed seed, drawn now when none is given, so a job can be rerun
    (or resumed) to the same weights."""
    if training.get("seed") is not None:
        return training
    return {**training, "seed": secrets.randbelow(2**31)}


def submit_job(
    session: Session, queue: JobQueue, dataset_id: int, network: dict, training: dict
) -> TrainingJob:
    """Store a queued job with its resolved specs, commit, and only then send it to a worker."""
    dataset = find_dataset(session, dataset_id)
    resolved = resolve_for(dataset, network, training)
    resolved_network, initial_weights = split_network(resolved.network)
    job = TrainingJob(
        dataset_id=dataset.id,
        network=resolved_network,
        initial_weights=initial_weights,
        training=with_seed(plain_json(resolved.training)),
        warnings=resolved.warnings,
        epochs=resolved.training["epochs"],
    )
    queries.add(session, job)
    try:
        queue.enqueue_training(job.id)
    except Exception as error:
        queries.fail_queued_job(session, job.id, f"the job could not be queued: {error}")
        raise QueueUnavailable(str(error)) from error
    return job
