"""Class and sample weights: each training row's weight in the loss.

A row's weight is its sample weight (1 when none is given) times its class's weight
(``training.class_weight``, classification only). The loss of a set of rows is then the weighted
mean ``sum(w_i * l_i) / sum(w_i)``, and its gradient the same weighted mean of the rows'
gradients; so an integer weight k on a row trains exactly as k copies of it would. ``"balanced"``
is scikit-learn's ``n_samples / (n_classes * count)``, counted over every row handed to training
(a random validation split included). Without either kind of weight no row weights exist at all,
and training runs the unweighted code as before.
"""

import math
from typing import Any

import numpy as np

from model_core.errors import SpecError


def resolve_class_weight(value: Any) -> str | dict[str, float] | None:
    """``training.class_weight``: None, ``"balanced"``, or ``{label: weight}`` with each weight
    a finite number >= 0 (labels as text: JSON keys are strings)."""
    if value is None or value == "balanced":
        return value
    if not isinstance(value, dict):
        raise SpecError(
            "training",
            "class_weight",
            f"must be 'balanced' or an object of label: weight, got {value!r}",
        )
    resolved = {}
    for label, weight in value.items():
        path = f"class_weight.{label}"
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)):
            raise SpecError("training", path, f"must be a number, got {weight!r}")
        if not (math.isfinite(weight) and weight >= 0):
            raise SpecError("training", path, f"must be a finite number >= 0, got {weight}")
        resolved[str(label)] = float(weight)
    return resolved


def check_class_weight_labels(class_weight: str | dict | None, classes: list | None) -> None:
    """Every label ``class_weight`` names is one of ``classes`` (the data's, as JSON values)."""
    if not isinstance(class_weight, dict):
        return
    known = {str(label) for label in classes or ()}
    for label in class_weight:
        if label not in known:
            shown = ", ".join(sorted(known)[:20])
            raise SpecError(
                "training",
                f"class_weight.{label}",
                f"unknown label {label!r}; the classes are {shown}",
            )


def class_weight_vector(
    class_weight: str | dict | None, classes: list, labels: np.ndarray
) -> np.ndarray | None:
    """The weight of each class (n_classes,) in float64, in the order of ``classes``; ``labels``
    (n_samples,) are the class indices the balanced weights count."""
    if class_weight is None:
        return None
    if class_weight == "balanced":
        counts = np.bincount(labels, minlength=len(classes)).astype(np.float64)
        return len(labels) / (len(classes) * counts)
    check_class_weight_labels(class_weight, classes)
    return np.array([class_weight.get(str(label), 1.0) for label in classes], dtype=np.float64)


def checked_sample_weight(
    sample_weight, n_samples: int, field: str = "sample_weight"
) -> np.ndarray:
    """``sample_weight`` as a float64 array (n_samples,) of finite numbers >= 0; raises
    ``SpecError`` naming the first bad row."""
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError("data", field, f"{field} must be a 1-D array of numbers") from None
    if weights.shape != (n_samples,):
        raise SpecError(
            "data", field, f"{field} has shape {weights.shape}; expected ({n_samples},)"
        )
    bad = ~(np.isfinite(weights) & (weights >= 0))
    if bad.any():
        row = int(np.argmax(bad))
        raise SpecError(
            "data",
            field,
            f"{field} at row {row} is {weights[row]}; weights are finite numbers >= 0",
        )
    return weights


def row_weights(
    sample_weight,
    per_class: np.ndarray | None,
    labels: np.ndarray | None,
    n_samples: int,
    dtype,
    field: str = "sample_weight",
) -> np.ndarray | None:
    """Each row's weight (n_samples,) in ``dtype``, scaled to a mean of 1: its sample weight
    times its class's weight; None when there are neither (the unweighted loss)."""
    if sample_weight is None and per_class is None:
        return None
    weights = (
        np.ones(n_samples)
        if sample_weight is None
        else checked_sample_weight(sample_weight, n_samples, field)
    )
    if per_class is not None:
        weights = weights * per_class[labels]
    with np.errstate(over="ignore"):  # an overflow is refused below
        total = weights.sum()
    where = ("data", field) if sample_weight is not None else ("training", "class_weight")
    if not total > 0:
        raise SpecError(*where, "gives every row weight 0: no row would count")
    if not np.isfinite(total):
        raise SpecError(*where, "the rows' weights sum to more than a float64 holds: scale them")
    # Scaled to a mean of 1, which changes no weighted mean, so that float32 holds them and their
    # sums whatever their scale.
    return (weights * (len(weights) / total)).astype(dtype)


def check_rows_weigh(weights: np.ndarray | None, rows: np.ndarray, which: str) -> None:
    """``rows`` (of a split) have a positive total weight, so that their weighted mean loss is
    defined; ``which`` names them in the error."""
    if weights is not None and not weights[rows].sum() > 0:
        raise SpecError(
            "training", "validation_split", f"the {which} rows' weights sum to 0: set other weights"
        )
