"""A model's contract with its callers: the named, typed inputs it takes, in order, and the
outputs it answers with (MLflow's model signature, KServe's tensor metadata).

A signature is plain JSON, stored on the model's row when the worker makes it::

    {"named": true, "task": "classification",
     "inputs": [{"name": "petal_length", "dtype": "float64",
                 "min": 1.0, "max": 6.9, "mean": 3.76, "std": 1.76}, ...],
     "outputs": {"classes": ["setosa", "versicolor", "virginica"], "type": "string"}}

Regression outputs are ``{"targets": ["price"]}``. ``named`` is false when the training data
named no features: the inputs are then ``x0..x{N-1}`` and callers send positional rows. The
statistics come from the training split's raw rows (before standardisation), and are None when
they could not be computed; they are a profile, never part of compatibility.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

STATISTICS = ("min", "max", "mean", "std")

# JSON types of class labels, from the kind of the numpy array of the labels.
LABEL_TYPES = {"b": "bool", "i": "int", "u": "int", "f": "number", "U": "string"}


def numbered(prefix: str, count: int) -> list[str]:
    """``[prefix0, prefix1, ...]``: the names of columns nobody named."""
    return [f"{prefix}{i}" for i in range(count)]


def input_signature(
    names: Sequence[str], dtype: str, statistics: Mapping[str, np.ndarray] | None
) -> list[dict[str, Any]]:
    """One entry per feature, in input order: its name, dtype and (when known) statistics."""
    inputs = []
    for index, name in enumerate(names):
        figures = {
            key: None if statistics is None else float(statistics[key][index]) for key in STATISTICS
        }
        inputs.append({"name": name, "dtype": dtype, **figures})
    return inputs


def output_signature(
    task: str, classes: Sequence | None, target_names: Sequence[str] | None, n_outputs: int
) -> dict[str, Any]:
    """The class labels in output order and their type, or the regression targets' names."""
    if task == "classification":
        labels = np.asarray(classes if classes is not None else [], dtype=None)
        return {"classes": labels.tolist(), "type": LABEL_TYPES.get(labels.dtype.kind, "string")}
    return {"targets": list(target_names) if target_names else numbered("y", n_outputs)}


def model_signature(
    task: str,
    feature_names: Sequence[str] | None,
    n_features: int,
    dtype: str,
    outputs: dict[str, Any],
    statistics: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """A whole signature: inputs named by ``feature_names`` (else ``x0..``, ``named`` false)."""
    names = list(feature_names) if feature_names else numbered("x", n_features)
    return {
        "named": bool(feature_names),
        "task": task,
        "inputs": input_signature(names, dtype, statistics),
        "outputs": outputs,
    }


def input_names(signature: Mapping[str, Any]) -> list[str]:
    """The features' names, in input order."""
    return [feature["name"] for feature in signature["inputs"]]


def named_inputs(signature: Mapping[str, Any]) -> list[str] | None:
    """The features' names when the training data named them; None for positional models."""
    return input_names(signature) if signature["named"] else None


def signature_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What a caller of ``old`` would find broken in ``new``, one line per difference:
    ``task: classification -> regression``, ``inputs[2]: petal_length -> petal_width``,
    ``inputs[4]: added sepal_area``, ``outputs.classes[1]: 2 -> 3``. Empty when compatible.
    Statistics and dtypes are no part of it: callers send JSON numbers either way."""
    changes = []
    if old["task"] != new["task"]:
        changes.append(f"task: {old['task']} -> {new['task']}")
    changes += sequence_changes("inputs", input_names(old), input_names(new))
    for key in sorted(old["outputs"].keys() | new["outputs"].keys()):
        before, after = old["outputs"].get(key), new["outputs"].get(key)
        if isinstance(before, list) and isinstance(after, list):
            changes += sequence_changes(f"outputs.{key}", before, after)
        elif before != after:
            changes.append(f"outputs.{key}: {before} -> {after}")
    return changes


def sequence_changes(path: str, old: Sequence, new: Sequence) -> list[str]:
    """Position by position: a different item, one added at the end, or one removed."""
    changes = []
    for index in range(max(len(old), len(new))):
        if index >= len(old):
            changes.append(f"{path}[{index}]: added {new[index]}")
        elif index >= len(new):
            changes.append(f"{path}[{index}]: removed {old[index]}")
        elif old[index] != new[index]:
            changes.append(f"{path}[{index}]: {old[index]} -> {new[index]}")
    return changes
