"""Checking a submission against its data set: the service's own training fields, model_core's
specs, the size of the network; and the dry run (``POST /v1/jobs/validate``).

A job stores its training spec as one dict (model_core's fields and the service's own) and its
initial weights apart from its network, whose service fields name the registered model it starts
from (``service.jobs.fine_tuning``); ``stored_specs`` turns a stored job back into the specs
model_core and the worker use.
"""

import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from model_core import SpecError, layer_shapes
from service.db import records
from service.db.models import Dataset, TrainingJob
from service.jobs import costs
from service.jobs.fine_tuning import (
    StartingModel,
    check_start,
    inherited_specs,
    starting_model,
    stored_network,
)
from service.settings import Settings
from service.specs_json import JsonSpecs, network_fields_apart, resolve_json, service_fields_apart
from service.vocabulary import DataError


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
    """Infinity is refused too: no JSON column can store it (PostgreSQL's refuses the row,
    SQLite's stores a document no JSON parser reads back)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise DataError(
            "training.checkpoint_every_seconds", "must be a finite number of seconds > 0"
        )


# The check of each of the service's own training fields (``SERVICE_TRAINING_FIELDS``).
SERVICE_FIELD_CHECKS = {
    "max_seconds": check_max_seconds,
    "checkpoint_every_epochs": check_checkpoint_every_epochs,
    "checkpoint_every_seconds": check_checkpoint_every_seconds,
}


def check_service_fields(training: dict, settings: Settings) -> None:
    """Check the service's own training fields (``SERVICE_TRAINING_FIELDS``); raises
    ``DataError``."""
    _engine, own = service_fields_apart(training)
    for key, value in own.items():
        SERVICE_FIELD_CHECKS[key](value, settings)


@dataclass(frozen=True)
class StoredSpecs:
    """A stored job's specs: model_core's network (with its initial weights) and training spec,
    the service's own training fields (checkpoint intervals, time limit), and the id of the
    model it starts from (None: from fresh weights) with whether its output layer is new."""

    network: dict
    training: dict
    service_fields: dict
    init_from: int | None = None
    replace_output: bool = False


def stored_specs(job: TrainingJob) -> StoredSpecs:
    """``job``'s specs as stored at submission; reads its initial weights (a deferred column)."""
    training, own = service_fields_apart(job.training)
    network, start = network_fields_apart(job.network)
    return StoredSpecs(
        {**network, "initial_weights": job.initial_weights},
        training,
        own,
        start.get("init_from"),
        start.get("replace_output", False),
    )


def count_parameters(network: dict, n_features: int) -> int:
    """Weights and biases of the network: sum over layers of (inputs + 1) x units."""
    shapes = layer_shapes(n_features, network["layers"])
    return sum((fan_in + 1) * units for fan_in, units in shapes)


def check_size(network: dict, n_features: int, max_parameters: int) -> int:
    """A network too large to train here is refused before it can exhaust a worker's memory
    (and be retried as a poison job); returns its number of parameters."""
    count = count_parameters(network, n_features)
    if count > max_parameters:
        raise DataError(
            "network.layers",
            f"has {count} parameters; the limit is {max_parameters} (MAX_PARAMETERS)",
        )
    return count


def check_cost(
    resolved: JsonSpecs, dataset: Dataset, settings: Settings, fine_tuning: bool = False
) -> None:
    """The network's shape, its parameters and the job's working set, each against its limit."""
    network = resolved.network
    n_parameters = check_size(network, dataset.n_features, settings.max_parameters)
    costs.check_network_shape(network, settings)
    working_set = costs.working_set(
        network,
        resolved.training,
        dataset.n_samples,
        dataset.n_features,
        n_parameters,
        weighted=dataset.weighted,
        fine_tuning=fine_tuning,
    )
    costs.check_job_memory(working_set, settings.max_job_memory)


def find_dataset(session: Session, dataset_id: int) -> Dataset:
    """The data set a job names; a missing one is a problem with the request body."""
    dataset = records.get_dataset(session, dataset_id)
    if dataset is None:
        raise DataError("dataset_id", f"no data set with id {dataset_id}")
    return dataset


@dataclass(frozen=True)
class ResolvedJob:
    """A job's data set and specs with every default filled in, ready to store."""

    dataset: Dataset
    network: dict
    initial_weights: list | None
    training: dict
    warnings: list[str]
    model_name: str | None


def resolve_job(
    session: Session,
    settings: Settings,
    dataset_id: int,
    network: dict,
    training: dict,
    model_name: str | None = None,
) -> ResolvedJob:
    """Check a submission against its data set; raises ``DataError`` or ``SpecError``."""
    dataset = find_dataset(session, dataset_id)
    check_service_fields(training, settings)
    start = starting_model(session, network)
    resolved = resolve_specs(dataset, network, training, start)
    check_cost(resolved, dataset, settings, fine_tuning=start is not None)
    return ResolvedJob(
        dataset,
        resolved.network if start is None else stored_network(start, resolved.network),
        resolved.initial_weights,
        resolved.training,
        resolved.warnings,
        model_name,
    )


def resolve_specs(
    dataset: Dataset, network: dict, training: dict, start: StartingModel | None
) -> JsonSpecs:
    """The specs resolved against the data set and, when the job starts from a registered
    model, completed from it and checked against it."""
    if start is None:  # init_from null and replace_output false, if given at all
        return resolve_json(dataset, network_fields_apart(network)[0], training)
    network, training = inherited_specs(start, network, training, dataset)
    resolved = resolve_json(dataset, network, training, starts_trained=True)
    check_start(start, resolved.network, resolved.training, dataset)
    return resolved


def check_job(session: Session, settings: Settings, **body: Any) -> SpecReport:
    """A dry run of ``submit_job``: what would be wrong, and the specs with their defaults."""
    try:
        resolved = resolve_job(session, settings, **body)
    except (DataError, SpecError) as error:
        return SpecReport(errors={error.path: [error.message]})
    return SpecReport(
        warnings=resolved.warnings, network=resolved.network, training=resolved.training
    )
