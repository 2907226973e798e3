"""Checks network and training specs and fills in their defaults.

Specs arrive as JSON-shaped dicts (the HTTP API passes request bodies straight through). Every
problem raises :class:`SpecError` naming the field, e.g. ``layers[1].activation: unknown
'sigmod'``. The resolved specs are plain dicts again, with every default written out, so a stored
job says exactly what it ran.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_core.activations import ACTIVATIONS
from model_core.errors import SpecError
from model_core.initializers import INITIALIZERS
from model_core.losses import LOSSES
from model_core.network import layer_shapes
from model_core.optimizers import OPTIMIZERS
from model_core.schedules import SCHEDULES
from model_core.weighting import resolve_class_weight

TASKS = ("classification", "regression")
DTYPES = ("float32", "float64")
RELU_FAMILY = ("relu", "leaky_relu")
EARLY_STOPPING_DEFAULTS = {"patience": 10, "min_delta": 1e-4, "restore_best": True}
TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 100,
    "batch_size": 32,
    "shuffle": True,
    "seed": None,
    "optimizer": {"name": "sgd"},
    "l2": 0.0,
    "validation_split": 0.0,
    "early_stopping": None,
    "standardize": True,
    "class_weight": None,
    "schedule": None,
    "warmup_epochs": 0,
    "clip_norm": None,
}
# The largest 32-bit signed integer: counts beyond it are mistakes, and would not fit a 32-bit
# database column.
MAX_INT32 = 2**31 - 1
LAYER_KEYS = ("units", "activation", "dropout")
NETWORK_KEYS = ("layers", "loss", "init", "dtype", "initial_weights")


@dataclass(frozen=True)
class ResolvedSpec:
    network: dict
    training: dict
    warnings: list[str] = field(default_factory=list)


def _choices(options) -> str:
    return ", ".join(sorted(options))


def _check_keys(section: str, path: str, spec: Any, allowed) -> None:
    if not isinstance(spec, dict):
        raise SpecError(section, path, "must be an object")
    for key in spec:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise SpecError(section, where, f"unknown field; expected one of {_choices(allowed)}")


def _integer(section: str, path: str, value: Any, minimum: int, maximum: int = MAX_INT32) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SpecError(section, path, f"must be an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise SpecError(section, path, f"must be >= {minimum} and <= {maximum}, got {value}")
    return int(value)


def _number(
    section: str,
    path: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number in the interval from low to high (each end open or closed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise SpecError(section, path, f"must be a number, got {value!r}")
    value = float(value)
    above_low = value > low if low_open else value >= low
    below_high = value < high if high_open else value <= high
    if not (math.isfinite(value) and above_low and below_high):
        bounds = [f"{'>' if low_open else '>='} {low}"]
        if high != math.inf:
            bounds.append(f"{'<' if high_open else '<='} {high}")
        raise SpecError(section, path, f"must be {' and '.join(bounds)}, got {value}")
    return value


def _boolean(section: str, path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(section, path, f"must be true or false, got {value!r}")
    return value


def _choice(section: str, path: str, value: Any, options) -> str:
    if not isinstance(value, str) or value not in options:
        raise SpecError(section, path, f"unknown {value!r}; expected one of {_choices(options)}")
    return value


def resolve_layers(layers: Any) -> list[dict]:
    if not isinstance(layers, list) or not layers:
        raise SpecError("network", "layers", "must be a non-empty list of layers")
    resolved = []
    for i, layer in enumerate(layers):
        path = f"layers[{i}]"
        _check_keys("network", path, layer, LAYER_KEYS)
        for key in ("units", "activation"):
            if key not in layer:
                raise SpecError("network", f"{path}.{key}", "is required")
        units = _integer("network", f"{path}.units", layer["units"], 1)
        activation = layer["activation"]
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise SpecError(
                "network",
                f"{path}.activation",
                f"unknown {activation!r}; expected one of {_choices(ACTIVATIONS)}",
            )
        if activation == "softmax" and i != len(layers) - 1:
            raise SpecError(
                "network", f"{path}.activation", "softmax is only allowed on the last layer"
            )
        dropout = resolve_dropout(layer.get("dropout", 0.0), path, i == len(layers) - 1)
        resolved.append({"units": units, "activation": activation, "dropout": dropout})
    return resolved


def resolve_dropout(rate: Any, path: str, is_output: bool) -> float:
    """A hidden layer's dropout rate, 0 <= p < 1; the output layer has none."""
    rate = _number("network", f"{path}.dropout", rate, 0.0, 1.0, high_open=True)
    if rate and is_output:
        raise SpecError("network", f"{path}.dropout", "is for hidden layers, not the output layer")
    return rate


def default_loss(output_activation: str, task: str) -> str:
    """cross_entropy after softmax, binary_cross_entropy after sigmoid for classes, else mse."""
    if output_activation == "softmax":
        return "cross_entropy"
    if output_activation == "sigmoid" and task == "classification":
        return "binary_cross_entropy"
    return "mse"


def resolve_loss(loss: Any, output_activation: str, task: str) -> str:
    """The given loss, or the default for the output activation; either is checked against the
    output layer and the task, so that a resolved spec always resolves again (the worker
    resolves the stored spec once more before training)."""
    if loss is None:
        default = default_loss(output_activation, task)
        check_loss(
            default,
            f"{default} (the default after a {output_activation} output)",
            output_activation,
            task,
        )
        return default
    _choice("network", "loss", loss, LOSSES)
    check_loss(loss, loss, output_activation, task)
    return loss


def check_loss(loss: str, described: str, output_activation: str, task: str) -> None:
    """A loss that needs a given output activation needs it, and classification."""
    required = LOSSES[loss].required_activation
    if required and output_activation != required:
        raise SpecError("network", "loss", f"{described} needs a {required} output layer")
    if required and task != "classification":
        raise SpecError(
            "network",
            "loss",
            f"{described} is for classification, not {task}; choose a loss such as mse, or"
            " another output activation",
        )


def check_output_width(layers: list[dict], loss: str, task: str, n_outputs: int) -> None:
    """The last layer's units must match the classes (classification) or target columns."""
    units = layers[-1]["units"]
    path = f"layers[{len(layers) - 1}].units"
    if task == "regression":
        if units != n_outputs:
            raise SpecError(
                "network",
                path,
                f"output layer has {units} units but the data has {n_outputs} target column(s)",
            )
        return
    if loss == "binary_cross_entropy" and units == 1 and n_outputs == 2:
        return
    if units != n_outputs:
        hint = " (or 1 sigmoid unit for 2 classes)" if n_outputs == 2 else ""
        raise SpecError(
            "network",
            path,
            f"output layer has {units} units but the data has {n_outputs} classes{hint}",
        )


def resolve_initial_weights(weights: Any, layers: list[dict], n_features: int) -> list[dict] | None:
    """Checks shapes against the layers; returns ``[{"W": (inputs, units), "b": (units,)}, ...]``
    as float64 arrays."""
    if weights is None:
        return None
    if not isinstance(weights, (list, tuple)) or len(weights) != len(layers):
        raise SpecError(
            "network",
            "initial_weights",
            f"must be a list of {len(layers)} {{W, b}} objects, one per layer",
        )
    resolved = []
    shapes = layer_shapes(n_features, layers)
    for i, (pair, (fan_in, units)) in enumerate(zip(weights, shapes, strict=True)):
        path = f"initial_weights[{i}]"
        _check_keys("network", path, pair, ("W", "b"))
        arrays = {}
        for key, shape in (("W", (fan_in, units)), ("b", (units,))):
            if key not in pair:
                raise SpecError("network", f"{path}.{key}", "is required")
            arrays[key] = _float_array("network", f"{path}.{key}", pair[key], shape)
        resolved.append(arrays)
    return resolved


def _float_array(section: str, path: str, value: Any, shape: tuple) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError(section, path, "must be an array of numbers") from None
    if array.shape != shape:
        raise SpecError(section, path, f"has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise SpecError(section, path, "contains NaN or infinity")
    return array


def network_dtype(network: Any) -> str:
    """The dtype the network computes in, checked before the rest so the data can be read."""
    _check_keys("network", "", network, NETWORK_KEYS)
    return _choice("network", "dtype", network.get("dtype", "float32"), DTYPES)


def resolve_network(network: Any, *, task: str, n_features: int, n_outputs: int) -> dict:
    _check_keys("network", "", network, NETWORK_KEYS)
    if "layers" not in network:
        raise SpecError("network", "layers", "is required")
    layers = resolve_layers(network["layers"])
    output_activation = layers[-1]["activation"]
    loss = resolve_loss(network.get("loss"), output_activation, task)
    check_output_width(layers, loss, task, n_outputs)
    hidden = [layer["activation"] for layer in layers[:-1]]
    default_init = "he" if any(name in RELU_FAMILY for name in hidden) else "xavier"
    init = _choice("network", "init", network.get("init", default_init), INITIALIZERS)
    return {
        "layers": layers,
        "loss": loss,
        "init": init,
        "dtype": network_dtype(network),
        "initial_weights": resolve_initial_weights(
            network.get("initial_weights"), layers, n_features
        ),
    }


def resolve_optimizer(optimizer: Any) -> dict:
    if isinstance(optimizer, str):
        optimizer = {"name": optimizer}
    if not isinstance(optimizer, dict):
        raise SpecError("training", "optimizer", "must be an object or an optimizer name")
    name = _choice("training", "optimizer.name", optimizer.get("name", "sgd"), OPTIMIZERS)
    defaults = OPTIMIZERS[name].DEFAULTS
    _check_keys("training", "optimizer", optimizer, ("name", *defaults))
    resolved = {"name": name, **defaults, **optimizer}
    check = {
        "learning_rate": lambda p, v: _number("training", p, v, 0.0, low_open=True),
        "momentum": lambda p, v: _number("training", p, v, 0.0, 1.0, high_open=True),
        "nesterov": lambda p, v: _boolean("training", p, v),
        "decay": lambda p, v: _number("training", p, v, 0.0),
        "beta1": lambda p, v: _number("training", p, v, 0.0, 1.0, high_open=True),
        "beta2": lambda p, v: _number("training", p, v, 0.0, 1.0, high_open=True),
        "epsilon": lambda p, v: _number("training", p, v, 0.0, low_open=True),
    }
    for key in defaults:
        resolved[key] = check[key](f"optimizer.{key}", resolved[key])
    if resolved.get("nesterov") and not resolved["momentum"]:
        raise SpecError("training", "optimizer.nesterov", "needs momentum > 0")
    return resolved


# The check of each schedule setting (model_core.schedules: SCHEDULES' fields).
SCHEDULE_CHECKS = {
    "step_size": lambda p, v: _integer("training", p, v, 1),
    "gamma": lambda p, v: _number("training", p, v, 0.0, 1.0, low_open=True),
    "t_max": lambda p, v: _integer("training", p, v, 1),
    "eta_min": lambda p, v: _number("training", p, v, 0.0),
    "factor": lambda p, v: _number("training", p, v, 0.0, 1.0, low_open=True, high_open=True),
    "patience": lambda p, v: _integer("training", p, v, 0),
    "threshold": lambda p, v: _number("training", p, v, 0.0, 1.0, high_open=True),
    "min_lr": lambda p, v: _number("training", p, v, 0.0),
}


def resolve_schedule(schedule: Any, optimizer: dict) -> dict | None:
    """``training.schedule``: a name and its settings (SCHEDULES), in place of the optimizer's
    ``decay``."""
    if schedule is None:
        return None
    if not isinstance(schedule, dict):
        raise SpecError("training", "schedule", "must be an object with a name, or null")
    if "name" not in schedule:
        raise SpecError("training", "schedule.name", "is required")
    name = _choice("training", "schedule.name", schedule["name"], SCHEDULES)
    kind = SCHEDULES[name]
    fields = (*kind.REQUIRED, *kind.DEFAULTS)
    _check_keys("training", "schedule", schedule, ("name", *fields))
    for key in kind.REQUIRED:
        if key not in schedule:
            raise SpecError("training", f"schedule.{key}", f"is required by the {name} schedule")
    if optimizer["decay"]:
        raise SpecError(
            "training", "schedule", "replaces optimizer.decay: leave decay out, or the schedule"
        )
    given = {**kind.DEFAULTS, **schedule}
    return {
        "name": name,
        **{key: SCHEDULE_CHECKS[key](f"schedule.{key}", given[key]) for key in fields},
    }


def resolve_clip_norm(clip_norm: Any) -> float | None:
    if clip_norm is None:
        return None
    return _number("training", "clip_norm", clip_norm, 0.0, low_open=True)


def resolve_early_stopping(early_stopping: Any) -> dict | None:
    if early_stopping is None or early_stopping is False:
        return None
    if early_stopping is True:
        early_stopping = {}
    _check_keys("training", "early_stopping", early_stopping, EARLY_STOPPING_DEFAULTS)
    resolved = {**EARLY_STOPPING_DEFAULTS, **early_stopping}
    return {
        "patience": _integer("training", "early_stopping.patience", resolved["patience"], 1),
        "min_delta": _number("training", "early_stopping.min_delta", resolved["min_delta"], 0.0),
        "restore_best": _boolean(
            "training", "early_stopping.restore_best", resolved["restore_best"]
        ),
    }


def resolve_batch_size(batch_size: Any) -> int | str:
    if batch_size == "full":
        return "full"
    if isinstance(batch_size, str):
        raise SpecError(
            "training", "batch_size", f"must be an integer or 'full', got {batch_size!r}"
        )
    return _integer("training", "batch_size", batch_size, 1)


def resolve_training(training: Any) -> dict:
    training = {} if training is None else training
    _check_keys("training", "", training, TRAINING_DEFAULTS)
    spec = {**TRAINING_DEFAULTS, **training}
    seed = spec["seed"]
    optimizer = resolve_optimizer(spec["optimizer"])
    return {
        # 0 only for a network that starts from given weights (checked by resolve_spec)
        "epochs": _integer("training", "epochs", spec["epochs"], 0),
        "batch_size": resolve_batch_size(spec["batch_size"]),
        "shuffle": _boolean("training", "shuffle", spec["shuffle"]),
        "seed": None if seed is None else _integer("training", "seed", seed, 0, 2**32 - 1),
        "optimizer": optimizer,
        "l2": _number("training", "l2", spec["l2"], 0.0),
        "validation_split": _number(
            "training", "validation_split", spec["validation_split"], 0.0, 1.0, high_open=True
        ),
        "early_stopping": resolve_early_stopping(spec["early_stopping"]),
        "standardize": _boolean("training", "standardize", spec["standardize"]),
        "class_weight": resolve_class_weight(spec["class_weight"]),
        "schedule": resolve_schedule(spec["schedule"], optimizer),
        "warmup_epochs": _integer("training", "warmup_epochs", spec["warmup_epochs"], 0),
        "clip_norm": resolve_clip_norm(spec["clip_norm"]),
    }


def resolve_spec(
    network: Any,
    training: Any = None,
    *,
    task: str,
    n_features: int,
    n_outputs: int,
    n_samples: int | None = None,
    starts_trained: bool = False,
) -> ResolvedSpec:
    """Checks both specs against the data's shape; returns them with every default filled in.

    ``n_outputs`` is the number of classes (classification) or target columns (regression);
    ``starts_trained``: the network starts from a trained model's weights (``Trainer``'s
    ``init_from``), which, like ``network.initial_weights``, allows ``epochs`` 0.
    """
    if task not in TASKS:
        raise SpecError("data", "task", f"unknown {task!r}; expected one of {_choices(TASKS)}")
    if task == "classification" and n_outputs < 2:
        raise SpecError("data", "y", f"classification needs at least 2 classes, got {n_outputs}")
    resolved_network = resolve_network(
        network, task=task, n_features=n_features, n_outputs=n_outputs
    )
    resolved_training = resolve_training(training)
    check_epochs(
        resolved_training, starts_trained or resolved_network["initial_weights"] is not None
    )
    if task != "classification" and resolved_training["class_weight"] is not None:
        raise SpecError("training", "class_weight", "is for classification")
    return ResolvedSpec(
        resolved_network,
        resolved_training,
        _warnings(resolved_network, resolved_training, n_samples),
    )


def check_epochs(training: dict, given_weights: bool) -> None:
    """``epochs`` 0 trains nothing: only a network that starts from given weights may ask it."""
    if training["epochs"] == 0 and not given_weights:
        raise SpecError(
            "training",
            "epochs",
            "must be >= 1 (0 only for a network that starts from given weights:"
            " initial_weights, or a model to fine-tune)",
        )


def _warnings(network: dict, training: dict, n_samples: int | None) -> list[str]:
    warnings = []
    batch_size = training["batch_size"]
    if n_samples is not None and batch_size != "full" and batch_size > n_samples:
        warnings.append(
            f"training.batch_size {batch_size} is larger than the {n_samples} "
            "training rows; each epoch is one full batch"
        )
    if training["early_stopping"] and not training["validation_split"]:
        warnings.append(
            "training.early_stopping watches the training loss: there is no "
            "validation data (set training.validation_split)"
        )
    if training["warmup_epochs"] >= training["epochs"]:
        warnings.append(
            f"training.warmup_epochs {training['warmup_epochs']} is not below the"
            f" {training['epochs']} epochs: the rate never reaches optimizer.learning_rate"
        )
    if network["loss"] in ("sse", "mse") and network["layers"][-1]["activation"] == "softmax":
        warnings.append("network.loss: cross_entropy usually trains a softmax output faster")
    return warnings
