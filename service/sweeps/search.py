"""A sweep's search expanded into trials: each trial is a set of parameters, ``{path: value}``,
where a path points into the job body (``training.optimizer.learning_rate``,
``network.layers[0].units``).

Grid search takes every combination of the lists given, in the order given (the last parameter
changing fastest). Random search draws ``trials`` sets, each parameter from a list (a choice) or
a distribution: ``{"loguniform": [low, high]}``, ``{"uniform": [low, high]}``,
``{"int": [low, high]}`` (both ends included) or ``{"choice": [...]}``; the same seed draws the
same trials.
"""

import copy
import itertools
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from model_core import MAX_INT32
from service.vocabulary import DataError

ROOTS = ("network", "training")
# A path's steps: names, and [index] into lists.
STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
PARAMETERS = "search.parameters"
# The largest bound a distribution takes (by "is it int"): a float holds every integer up to
# 2**53, and an integer parameter lands in a spec field of at most MAX_INT32. Larger ones would
# overflow (math, NumPy's integers) rather than make a trial.
BOUND_LIMITS = {False: (2**53, "2**53"), True: (MAX_INT32, f"{MAX_INT32} (2**31 - 1)")}


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
    if steps[:2] == ["network", "initial_weights"]:
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


def _step_into(target: Any, step: str | int, path: str, wants_list: bool) -> Any:
    if isinstance(step, int):
        if not isinstance(target, list) or step >= len(target):
            raise DataError(f"{PARAMETERS}.{path}", f"the body has no item [{step}] there")
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
        if not isinstance(target, list) or step >= len(target):
            raise DataError(f"{PARAMETERS}.{path}", f"the body has no item [{step}] there")
    elif not isinstance(target, dict):
        raise DataError(f"{PARAMETERS}.{path}", "the body has no object there")
    target[step] = value


def trial_body(base: dict, params: dict[str, Any]) -> dict:
    """A copy of ``base`` ({network, training}) with ``params`` set."""
    body = copy.deepcopy(base)
    for path, value in params.items():
        set_path(body, path, value)
    return body


def _bounds(path: str, kind: str, bounds: Any, positive: bool = False) -> tuple[float, float]:
    where = f"{PARAMETERS}.{path}.{kind}"
    numbers = (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
    )
    if not numbers:
        raise DataError(where, "must be [low, high], two finite numbers with low <= high")
    # Before isfinite, which cannot take an integer beyond a float's range.
    limit, limit_name = BOUND_LIMITS[kind == "int"]
    if any(abs(b) > limit for b in bounds):
        raise DataError(where, f"must be within -{limit_name} and {limit_name}")
    if not all(math.isfinite(b) for b in bounds) or bounds[0] > bounds[1]:
        raise DataError(where, "must be [low, high], two finite numbers with low <= high")
    if positive and bounds[0] <= 0:
        raise DataError(where, "must be above 0 (a log scale)")
    if kind == "int" and not all(isinstance(b, int) for b in bounds):
        raise DataError(where, "must be two integers")
    return bounds[0], bounds[1]


def _choices(path: str, values: Any, where: str) -> list:
    if not isinstance(values, list) or not values:
        raise DataError(where, "must be a non-empty list of values")
    return values


Sampler = Callable[[np.random.Generator], Any]


def _loguniform(path: str, bounds: Any) -> Sampler:
    low, high = _bounds(path, "loguniform", bounds, positive=True)
    return lambda rng: float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _uniform(path: str, bounds: Any) -> Sampler:
    low, high = _bounds(path, "uniform", bounds)
    return lambda rng: float(rng.uniform(low, high))


def _integer(path: str, bounds: Any) -> Sampler:
    low, high = _bounds(path, "int", bounds)
    return lambda rng: int(rng.integers(low, high, endpoint=True))


def _choice(path: str, values: Any) -> Sampler:
    options = _choices(path, values, f"{PARAMETERS}.{path}.choice")
    return lambda rng: copy.deepcopy(options[int(rng.integers(len(options)))])


DISTRIBUTIONS: dict[str, Callable[[str, Any], Sampler]] = {
    "loguniform": _loguniform,
    "uniform": _uniform,
    "int": _integer,
    "choice": _choice,
}


def sampler(path: str, spec: Any) -> Sampler:
    """How to draw parameter ``path``: a list is a choice, a one-key object a distribution."""
    if isinstance(spec, list):
        return _choice(path, spec)
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        valid = ", ".join(f'{{"{name}": ...}}' for name in DISTRIBUTIONS)
        raise DataError(f"{PARAMETERS}.{path}", f"must be a list of values or one of {valid}")
    kind, argument = next(iter(spec.items()))
    return DISTRIBUTIONS[kind](path, argument)


def grid(parameters: dict[str, Any], max_trials: int) -> list[dict[str, Any]]:
    """Every combination of the parameters' lists; at most ``max_trials`` of them."""
    values = []
    for path, spec in parameters.items():
        parse_path(path)
        if isinstance(spec, dict) and list(spec) == ["choice"]:
            spec = spec["choice"]
        values.append(
            _choices(path, spec, f"{PARAMETERS}.{path}")
            if isinstance(spec, list)
            else _grid_refusal(path)
        )
    size = math.prod(len(options) for options in values)
    if size > max_trials:
        raise DataError(
            PARAMETERS,
            f"make a grid of {size} trials; the limit is {max_trials} (MAX_SWEEP_TRIALS)",
        )
    return [
        dict(zip(parameters, combination, strict=True))
        for combination in itertools.product(*values)
    ]


def _grid_refusal(path: str):
    raise DataError(
        f"{PARAMETERS}.{path}", "grid search takes a list of values (distributions: random search)"
    )


def random_trials(parameters: dict[str, Any], trials: int, seed: int) -> list[dict[str, Any]]:
    """``trials`` parameter sets drawn with ``seed``, parameter by parameter in the order given."""
    samplers = {}
    for path, spec in parameters.items():
        parse_path(path)
        samplers[path] = sampler(path, spec)
    rng = np.random.default_rng(seed)
    return [{path: draw(rng) for path, draw in samplers.items()} for _ in range(trials)]
