"""A job body as the database stores it, made from what a sweep stores.

A sweep stores its base body once and each trial's parameters (``{path: value}``, a path like
``network.layers[0].units``); a trial's body is the base with its parameters set
(``trial_body``). ``resolve_json`` turns a body into the JSON a job row holds: model_core's
specs with every default filled in, the initial weights apart, the service's own training fields
kept as given. Sweep creation and job submission (which check more: settings, sizes) and
storage, which queues a sweep's trials, all resolve a body here.
"""

import copy
import re
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from model_core import resolve_spec
from model_core.weighting import check_class_weight_labels
from service.vocabulary import SERVICE_NETWORK_FIELDS, SERVICE_TRAINING_FIELDS, DataError, Task

ROOTS = ("network", "training")
# A path's steps: names, and [index] into lists.
STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
PARAMETERS = "search.parameters"


def parse_path(path: str) -> list[str | int]:
    """``network.layers[0].units`` -> ``["network", "layers", 0, "units"]``; raises
    ``DataError`` for a path that is not one, or that leaves ``network`` and ``training``."""
    steps: list[str | int] = []
    for part in path.split("."):
        matches = list(STEP.finditer(part))
        if not part or "".join(match.group(0) for match in matches) != part or part[0] == "[":
            raise DataError(f"{PARAMETERS}.{path}", "is not a path like network.layers[0].units")
        steps += [match.group(1) or int(match.group(2)) for match in matches]
    if steps[0] not in ROOTS or len(steps) < 2:
        raise DataError(
            f"{PARAMETERS}.{path}", "must point inside network or training, e.g. training.l2"
        )
    if steps[0] == "network" and steps[1] in ("initial_weights", *SERVICE_NETWORK_FIELDS):
        raise DataError(
            f"{PARAMETERS}.{path}", "a sweep's trials start from random weights: leave it out"
        )
    return steps


def set_path(body: dict, path: str, value: Any) -> None:
    """Set ``value`` at ``path`` in ``body`` (in place), making missing objects on the way."""
    steps = parse_path(path)
    target: Any = body
    for done, step in enumerate(steps[:-1]):
        following = steps[done + 1]
        target = _step_into(target, step, path, isinstance(following, int))
    _assign(target, steps[-1], value, path)


def _check_item(target: Any, step: int, path: str) -> None:
    if not isinstance(target, list) or step >= len(target):
        raise DataError(f"{PARAMETERS}.{path}", f"the body has no item [{step}] there")


def _step_into(target: Any, step: str | int, path: str, wants_list: bool) -> Any:
    if isinstance(step, int):
        _check_item(target, step, path)
        return target[step]
    if not isinstance(target, dict):
        raise DataError(f"{PARAMETERS}.{path}", f"{step}: the body has no object there")
    if step not in target or target[step] is None:
        if wants_list:
            raise DataError(f"{PARAMETERS}.{path}", f"the body has no list {step}")
        target[step] = {}
    return target[step]


def _assign(target: Any, step: str | int, value: Any, path: str) -> None:
    if isinstance(step, int):
        _check_item(target, step, path)
    elif not isinstance(target, dict):
        raise DataError(f"{PARAMETERS}.{path}", "the body has no object there")
    target[step] = value


def trial_body(base: dict, params: dict[str, Any]) -> dict:
    """A copy of ``base`` ({network, training}) with ``params`` set."""
    body = copy.deepcopy(base)
    for path, value in params.items():
        set_path(body, path, value)
    return body


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


def service_fields_apart(training: dict, fields=SERVICE_TRAINING_FIELDS) -> tuple[dict, dict]:
    """model_core's training spec, and the service's own fields (``SERVICE_TRAINING_FIELDS``);
    with ``fields`` ``SERVICE_NETWORK_FIELDS``, the same of a network spec."""
    own = {key: value for key, value in training.items() if key in fields}
    engine = {key: value for key, value in training.items() if key not in own}
    return engine, own


def network_fields_apart(network: dict) -> tuple[dict, dict]:
    """model_core's network spec, and the service's own fields (``SERVICE_NETWORK_FIELDS``)."""
    return service_fields_apart(network, SERVICE_NETWORK_FIELDS)


class DataShape(Protocol):
    """What resolving a spec needs of a data set (``service.db.models.Dataset`` has it)."""

    task: Task
    n_features: int
    n_outputs: int
    n_samples: int
    classes: list | None


@dataclass(frozen=True)
class JsonSpecs:
    """A job's specs as its row stores them: plain JSON, every default filled in."""

    network: dict
    initial_weights: list | None
    training: dict
    warnings: list[str]


def resolve_json(
    data: DataShape, network: dict, training: dict, starts_trained: bool = False
) -> JsonSpecs:
    """model_core's check of both specs against the data set's shape, as stored JSON; raises
    ``SpecError``. The service's own training fields are kept as given (their checks need the
    settings: ``service.jobs.specs``); ``network`` is model_core's alone, and
    ``starts_trained`` says it starts from a registered model (``service.jobs.fine_tuning``)."""
    engine, own = service_fields_apart(training)
    resolved = resolve_spec(
        network,
        engine,
        task=data.task.value,
        n_features=data.n_features,
        n_outputs=data.n_outputs,
        n_samples=data.n_samples,
        starts_trained=starts_trained,
    )
    check_class_weight_labels(resolved.training["class_weight"], data.classes)
    resolved_network, initial_weights = split_network(resolved.network)
    return JsonSpecs(
        resolved_network,
        initial_weights,
        {**plain_json(resolved.training), **own},
        list(resolved.warnings),
    )
