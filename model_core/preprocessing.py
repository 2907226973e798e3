"""Checks the data and prepares what the network trains on: the float matrix, the encoded targets
and the standardisation, all without copying the dataset more than once (if at all)."""

from dataclasses import dataclass

import numpy as np

from model_core.errors import SpecError

CHUNK_ROWS = 8192


def as_features(x, dtype, field: str = "X", n_features: int | None = None) -> np.ndarray:
    """X as a C-contiguous 2-D array of ``dtype``; copies only when the dtype or layout differs.

    Raises SpecError naming the first bad row: ``X contains NaN at row 7``.
    """
    try:
        array = np.ascontiguousarray(x, dtype=dtype)
    except (TypeError, ValueError):
        raise SpecError("data", field, "must be a 2-D array of numbers") from None
    if array.ndim != 2:
        raise SpecError("data", field, f"must be 2-D (rows x columns), got {array.ndim}-D")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise SpecError("data", field, f"is empty (shape {array.shape})")
    if n_features is not None and array.shape[1] != n_features:
        raise SpecError(
            "data", field, f"{field} has {array.shape[1]} columns, the network expects {n_features}"
        )
    check_finite(array, field)
    return array


def check_finite(array: np.ndarray, field: str) -> None:
    """Scans in chunks, so a large X costs no dataset-sized temporary.

    A chunk whose sum is finite has only finite values (an infinity or a NaN makes any sum that
    includes it infinite or NaN): one pass that reads the chunk and writes nothing, 1.4x to 1.7x
    faster than ``np.isfinite`` on 60,000 x 784 float32. Only a chunk whose sum is not finite (a
    value that is not, or finite values that overflow the sum) is scanned value by value."""
    for start in range(0, len(array), CHUNK_ROWS):
        chunk = array[start : start + CHUNK_ROWS]
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.add.reduce(chunk, axis=None)
        if np.isfinite(total):
            continue
        finite = np.isfinite(chunk)
        if not finite.all():
            row, column = np.argwhere(~finite)[0]
            what = "NaN" if np.isnan(chunk[row, column]) else "infinity"
            raise SpecError(
                "data", field, f"{field} contains {what} at row {start + row}, column {column}"
            )


@dataclass(frozen=True)
class Targets:
    """Training targets as the network sees them.

    ``matrix`` (n_samples, n_outputs) in the network's dtype: one-hot rows for classes, a single 0/1
    column for a binary sigmoid output, the values themselves for regression. ``labels`` holds each
    row's class index (classification only); ``classes`` the original labels in sorted order.
    """

    matrix: np.ndarray
    labels: np.ndarray | None
    classes: list | None
    ndim: int


def class_labels(y, field: str = "y") -> tuple[list, np.ndarray]:
    """Sorted distinct labels (as JSON values) and each row's index into them."""
    array = np.asarray(y)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise SpecError("data", field, "class labels must be a 1-D list, one per row")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise SpecError("data", field, f"{field} contains NaN or infinity")
    if array.dtype.kind not in "biufUSO":
        raise SpecError("data", field, "class labels must be integers or strings")
    try:
        classes, labels = np.unique(array, return_inverse=True)
    except TypeError:
        raise SpecError("data", field, "class labels must all be integers or all strings") from None
    return classes.tolist(), labels.reshape(-1)


def count_outputs(y, task: str, field: str = "y") -> int:
    """How many output units the data asks for: classes, or target columns."""
    if task == "classification":
        return len(class_labels(y, field)[0])
    array = np.asarray(y)
    return 1 if array.ndim == 1 else array.shape[1]


def encode_targets(
    y, task: str, units: int, dtype, n_samples: int, field: str = "y", classes: list | None = None
) -> Targets:
    """Encodes y for a network with ``units`` outputs; ``classes`` fixes the label order (for
    validation data, whose labels must be among the training classes)."""
    if task == "classification":
        found, labels = class_labels(y, field)
        _check_rows(len(labels), n_samples, field)
        if classes is None:
            classes = found
        else:
            labels = _reindex(found, classes, field)[labels]
        if units == 1:
            matrix = labels.astype(dtype).reshape(-1, 1)
        else:
            matrix = np.zeros((len(labels), units), dtype=dtype)
            matrix[np.arange(len(labels)), labels] = 1.0
        return Targets(matrix, labels, classes, 1)
    try:
        values = np.asarray(y, dtype=dtype)
    except (TypeError, ValueError):
        raise SpecError("data", field, "regression targets must be numbers") from None
    if values.ndim not in (1, 2):
        raise SpecError("data", field, "regression targets must be 1-D or 2-D")
    _check_rows(len(values), n_samples, field)
    matrix = values.reshape(len(values), -1)
    check_finite(matrix, field)
    return Targets(np.ascontiguousarray(matrix), None, None, values.ndim)


def _reindex(found: list, classes: list, field: str) -> np.ndarray:
    """Positions in ``classes`` of each label in ``found``."""
    lookup = {label: i for i, label in enumerate(classes)}
    unknown = [label for label in found if label not in lookup]
    if unknown:
        raise SpecError("data", field, f"has classes the training data lacks: {unknown[:5]}")
    return np.array([lookup[label] for label in found], dtype=np.intp)


def _check_rows(n_targets: int, n_samples: int, field: str) -> None:
    if n_targets != n_samples:
        raise SpecError("data", field, f"{field} has {n_targets} rows but X has {n_samples}")


def column_moments(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the given rows, in float64, chunk by chunk.

    Two passes over chunks keep the variance exact without a dataset-sized temporary.
    """
    total = np.zeros(x.shape[1])
    for start in range(0, len(rows), CHUNK_ROWS):
        total += x[rows[start : start + CHUNK_ROWS]].sum(axis=0, dtype=np.float64)
    mean = total / len(rows)
    squares = np.zeros(x.shape[1])
    for start in range(0, len(rows), CHUNK_ROWS):
        centred = x[rows[start : start + CHUNK_ROWS]].astype(np.float64) - mean
        squares += np.einsum("ij,ij->j", centred, centred)
    return mean, np.sqrt(squares / len(rows))


def column_ranges(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum of each column over the given rows, in float64, chunk by chunk."""
    low = np.full(x.shape[1], np.inf)
    high = np.full(x.shape[1], -np.inf)
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = x[rows[start : start + CHUNK_ROWS]]
        np.minimum(low, chunk.min(axis=0), out=low)
        np.maximum(high, chunk.max(axis=0), out=high)
    return low, high


def feature_statistics(x: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """``{"min", "max", "mean", "std"}`` (n_features,) float64 over the given rows of raw ``x``:
    the profile of the rows a model trained on (population std, as the standardisation's)."""
    low, high = column_ranges(x, rows)
    mean, std = column_moments(x, rows)
    return {"min": low, "max": high, "mean": mean, "std": std}


def standardizer(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) fitted on the given rows, in x's dtype; a constant column gets scale 1, as
    in scikit-learn's StandardScaler."""
    mean, std = column_moments(x, rows)
    std[std == 0.0] = 1.0
    return mean.astype(x.dtype), std.astype(x.dtype)


def standardize_into(x: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None) -> None:
    """In place: (x - mean) / scale, or nothing when the model does not standardise."""
    if mean is not None:
        x -= mean
        x /= scale
