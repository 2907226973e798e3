"""A sweep's search expanded into trials: each trial is a set of parameters, ``{path: value}``,
where a path points into the job body (``training.optimizer.learning_rate``,
``network.layers[0].units``; service/specs_json.py reads paths and sets them).

Grid search takes every combination of the lists given, in the order given (the last parameter
changing fastest). Random search draws ``trials`` sets, each parameter from a list (a choice) or
a distribution: ``{"loguniform": [low, high]}``, ``{"uniform": [low, high]}``,
``{"int": [low, high]}`` (both ends included) or ``{"choice": [...]}``; the same seed draws the
same trials.
"""

import copy
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from model_core import MAX_INT32
from service.specs_json import PARAMETERS, parse_path
from service.vocabulary import DataError

# The largest bound a distribution takes (by "is it int"): a float holds every integer up to
# 2**53, and an integer parameter lands in a spec field of at most MAX_INT32. Larger ones would
# overflow (math, NumPy's integers) rather than make a trial.
BOUND_LIMITS = {False: (2**53, "2**53"), True: (MAX_INT32, f"{MAX_INT32} (2**31 - 1)")}


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
