"""Turning uploads into stored data sets: JSON arrays, the built-in samples, and what every file
format shares (limits, column choices, targets); service/datasets/uploads.py reads the files.

Everything here works on plain values and ndarrays; a problem with the data raises ``DataError``
naming the field, which the API answers with a 422.
"""

import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import BinaryIO

import numpy as np

from service.datasets.samples import load_sample
from service.db.models import Dataset
from service.db.npz import write_npz
from service.vocabulary import DataError, Task

# The formats a data set file is uploaded in (service/datasets/uploads.py reads each; named here
# so that the API's schemas need not import the readers and pyarrow with them).
FILE_FORMATS = ("csv", "parquet", "npz")

# numpy keeps text as fixed-width UTF-32: every label as wide as the longest, 4 bytes a character.
LABEL_CHAR_BYTES = 4
# A feature cell as float64: class labels may take as many bytes as the largest features may.
CELL_BYTES = 8


@dataclass(frozen=True)
class DataLimits:
    """The largest data set accepted: rows, cells (rows x features), and class labels: each at
    most ``max_label_chars`` characters, all of them at most ``max_cells`` x ``CELL_BYTES``
    bytes as stored (``LABEL_CHAR_BYTES`` a character of the longest, on every row)."""

    max_rows: int
    max_cells: int
    max_label_chars: int

    def check(self, field: str, n_rows: int, n_columns: int) -> None:
        if n_rows > self.max_rows:
            limit = f"the limit is {self.max_rows} (MAX_DATASET_ROWS)"
            raise DataError(field, f"has {n_rows} rows; {limit}")
        if n_rows * n_columns > self.max_cells:
            limit = f"the limit is {self.max_cells} (MAX_DATASET_CELLS)"
            raise DataError(field, f"has {n_rows * n_columns} cells; {limit}")

    def check_labels(self, field: str, n_rows: int, longest: int, where: str = "") -> None:
        """``n_rows`` class labels whose longest has ``longest`` characters; ``where`` names
        their column or array in messages."""
        check_label_chars(field, longest, self.max_label_chars, where)
        size = n_rows * longest * LABEL_CHAR_BYTES
        if size > self.max_cells * CELL_BYTES:
            limit = f"the limit is {self.max_cells * CELL_BYTES} (MAX_DATASET_CELLS x {CELL_BYTES})"
            stored = f"holds {n_rows} labels of {longest} characters: {size} bytes"
            raise DataError(field, f"{where}{stored} (each as wide as the longest); {limit}")


def check_label_chars(field: str, longest: int, max_chars: int, where: str = "") -> None:
    """A class label is at most ``max_chars`` characters (MAX_LABEL_CHARS)."""
    if longest > max_chars:
        limit = f"the limit is {max_chars} (MAX_LABEL_CHARS)"
        raise DataError(field, f"{where}has a label of {longest} characters; {limit}")


def numeric_matrix(value: object, field: str) -> np.ndarray:
    """``value`` as a finite float64 array of shape (n_rows, n_columns), at least one row."""
    if not isinstance(value, list) or not value:
        raise DataError(field, "must be a non-empty list of rows")
    widths = {len(row) if isinstance(row, list) else -1 for row in value}
    if -1 in widths:
        raise DataError(field, "each row must be a list of numbers")
    if len(widths) > 1:
        raise DataError(field, f"rows have different lengths: {sorted(widths)}")
    if widths == {0}:
        raise DataError(field, "rows must not be empty")
    check_cells_are_flat_numbers(value, field)
    return numeric_array(np.array(value), value, field)


def check_cells_are_flat_numbers(rows: list[list], field: str) -> None:
    """Refuse text and nested lists among ``rows`` before numpy reads them: it pads every string
    to the longest (one 50,000-character cell among 2,000 rows would take 400 MB) and makes a
    deeper array of nested lists. The cells' types are gathered in one pass at C speed; only a
    refused input is read again, cell by cell, to name the first cell that is not a number."""
    types = set(map(type, chain.from_iterable(rows)))
    if list in types:
        raise DataError(field, "each row must be a flat list of numbers")
    if not types <= {int, float}:  # text, booleans (numpy takes True for 1.0), null, objects
        json_numbers(rows, field)  # raises, naming the first cell not a number


def numeric_array(array: np.ndarray, value: list, field: str) -> np.ndarray:
    """``array``, made by ``np.array(value)``, as finite float64.

    When numpy did not find numbers only, ``value`` is read again cell by cell to name the
    first cell that is not one: large valid inputs pay for numpy's conversion (and, for a
    matrix, the pass over the cells' types) alone.
    """
    if array.dtype.kind not in "iuf":
        array = np.array(json_numbers(value, field))
    array = array.astype(np.float64, copy=False)
    index = first_non_finite(array)
    if index is not None:
        path = field + "".join(f"[{position}]" for position in index)
        raise DataError(path, "NaN and infinity are not allowed")
    return array


def first_non_finite(array: np.ndarray) -> tuple[int, ...] | None:
    """The index of the first NaN or infinity in a float ``array`` (row-major), or None."""
    finite = np.isfinite(array)
    if finite.all():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmin(finite)), array.shape))


def json_numbers(value: list, field: str) -> list:
    """Nested lists ``value`` with each cell a float; the first cell that is not a number
    raises a ``DataError`` naming it, ``field[row][column]``."""
    numbers = []
    for index, item in enumerate(value):
        path = f"{field}[{index}]"
        numbers.append(
            json_numbers(item, path) if isinstance(item, list) else json_number(item, path)
        )
    return numbers


def json_number(cell: object, path: str) -> float:
    """A JSON cell as a float: a string, a boolean, null or an object is not a number."""
    if isinstance(cell, bool) or not isinstance(cell, int | float):
        raise DataError(path, f"{shown(cell)} is not a number")
    try:
        return float(cell)
    except OverflowError:  # an integer literal beyond 1.8e308
        raise DataError(path, f"{shown(cell)} is too large for a 64-bit float") from None


SHOWN_CHARS = 40


def shown(cell: object) -> str:
    """A JSON cell as an error message quotes it: strings as 'text', the rest as JSON."""
    text = repr(cell) if isinstance(cell, str) else json.dumps(cell)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def classification_labels(y: np.ndarray, field: str) -> np.ndarray:
    """1-D class labels as int64 or str; whole floats become ints."""
    if y.ndim != 1:
        raise DataError(field, "classification needs one label per row")
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        return y.astype(np.int64)
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "U":
        return y
    raise DataError(field, "classification labels must be integers or strings")


def regression_targets(y: np.ndarray, field: str) -> np.ndarray:
    """Float64 targets of shape (n,) or (n, n_targets), from finite numbers (``numeric_array``,
    or a file's reader in service/datasets/uploads.py)."""
    if y.ndim not in (1, 2):
        raise DataError(field, "regression targets must be numbers, one or a list per row")
    if y.ndim == 2 and y.shape[1] == 0:
        raise DataError(field, "each row needs at least one target value")
    return y.astype(np.float64, copy=False)


def compact_features(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 when that loses nothing (pixels, counts, most sensor data), else as is.

    Half the bytes to store and to load for every job, and no conversion before float32 training.
    The first rows are tried first: data that needs float64 (most decimals) is not converted
    whole only to be thrown away.
    """
    if x.dtype == np.float32 or not exact_in_float32(x[:SAMPLE_ROWS]):
        return x
    narrow = x.astype(np.float32)
    return narrow if np.array_equal(narrow, x) else x


SAMPLE_ROWS = 1000


def exact_in_float32(x: np.ndarray) -> bool:
    return np.array_equal(x.astype(np.float32), x)


TARGET_READERS = {Task.CLASSIFICATION: classification_labels, Task.REGRESSION: regression_targets}

# The most distinct whole numbers a target column may hold to be taken for class labels when an
# upload names no task: digits, ratings, 0/1; a count or an amount has more.
MAX_INFERRED_CLASSES = 20


def inferred_task(y: np.ndarray) -> Task:
    """The task targets ``y`` (n,) or (n, n_targets) suggest, for an upload that names none.

    Text and booleans are class labels, and so are whole numbers (of an integer or a float type,
    as scikit-learn's ``type_of_target`` reads them) with at most ``MAX_INFERRED_CLASSES``
    distinct values; other numbers, and several target columns, are regression.
    """
    if y.ndim != 1:
        return Task.REGRESSION
    if y.dtype.kind in "bU":
        return Task.CLASSIFICATION
    if y.dtype.kind not in "iuf":
        return Task.REGRESSION  # which names what the column holds instead of numbers
    whole = y.dtype.kind in "iu" or bool(np.isfinite(y).all() and (y == np.round(y)).all())
    many = len(np.unique(y)) > MAX_INFERRED_CLASSES
    return Task.REGRESSION if many or not whole else Task.CLASSIFICATION


def target_summary(task: Task, y: np.ndarray) -> dict:
    """Dataset columns describing the targets: classes, or per-column statistics."""
    if task is Task.CLASSIFICATION:
        classes = np.unique(y).tolist()
        return {"classes": classes, "n_outputs": len(classes), "target_stats": None}
    columns = y.reshape(len(y), -1)
    stats = {
        "mean": columns.mean(axis=0).tolist(),
        "std": columns.std(axis=0).tolist(),
        "min": columns.min(axis=0).tolist(),
        "max": columns.max(axis=0).tolist(),
    }
    return {"classes": None, "n_outputs": columns.shape[1], "target_stats": stats}


def checked_weights(w: np.ndarray, n_samples: int, field: str) -> np.ndarray:
    """Row weights ``w`` (n_samples,) as float64: finite numbers >= 0, not all 0; the first
    that is not one is named by its row (from 0)."""
    if w.shape != (n_samples,):
        raise DataError(field, f"needs one weight per row ({n_samples}); got shape {w.shape}")
    good = np.isfinite(w) & (w >= 0)
    if not good.all():
        row = int(np.argmin(good))
        raise DataError(field, f"row {row}: {w[row]} is not a weight (a finite number >= 0)")
    with np.errstate(over="ignore"):  # an overflow is refused below
        total = w.sum()
    if not total > 0:
        raise DataError(field, "every weight is 0: no row would count")
    if not np.isfinite(total):
        raise DataError(field, "the weights sum to more than a 64-bit float holds: scale them down")
    return w.astype(np.float64, copy=False)


@dataclass(frozen=True)
class PackedDataset:
    """A data set ready to be stored: its row, and its arrays as ``.npz`` in a temporary file
    (``row.stored_bytes`` long, at its start), removed when closed (``with`` or ``close``)."""

    row: Dataset
    npz: BinaryIO

    def close(self) -> None:
        self.npz.close()

    def __enter__(self) -> "PackedDataset":
        return self

    def __exit__(self, *_exception) -> None:
        self.close()


def packed_npz(**arrays: np.ndarray) -> tuple[BinaryIO, int]:
    """``arrays`` as ``.npz`` in a new temporary file, at its start, and its size: a data set
    is not held in memory a second time as bytes to store it."""
    file = tempfile.TemporaryFile()  # noqa: SIM115 (returned open; PackedDataset closes it)
    try:
        size = write_npz(file, **arrays)
    except BaseException:
        file.close()
        raise
    file.seek(0)
    return file, size


def build_dataset(
    *,
    name: str,
    task: Task,
    source: str,
    x: np.ndarray,
    y: np.ndarray,
    target_field: str,
    feature_names: Sequence[str] | None = None,
    target_names: Sequence[str] | None = None,
    sample_weight: np.ndarray | None = None,
    weight_field: str = "weight",
) -> PackedDataset:
    """A new ``Dataset`` row and its arrays from features ``x`` (n, n_features), raw targets
    ``y`` and, when given, each row's weight ``sample_weight`` (n,), stored as ``w``."""
    y = TARGET_READERS[task](y, target_field)
    if len(y) != len(x):
        raise DataError(target_field, f"has {len(y)} rows but the features have {len(x)}")
    summary = target_summary(task, y)
    if task is Task.CLASSIFICATION and summary["n_outputs"] < 2:
        raise DataError(target_field, "classification needs at least 2 classes")
    weights = {}
    if sample_weight is not None:
        weights["w"] = checked_weights(sample_weight, len(x), weight_field)
    npz, size = packed_npz(X=compact_features(x), y=y, **weights)
    row = Dataset(
        name=name,
        task=task,
        source=source,
        n_samples=len(x),
        n_features=x.shape[1],
        feature_names=list(feature_names) if feature_names else None,
        target_names=list(target_names) if target_names else None,
        stored_bytes=size,
        weighted=sample_weight is not None,
        **summary,
    )
    return PackedDataset(row, npz)


def dataset_from_json(
    name: str,
    task: Task,
    features: object,
    targets: object,
    limits: DataLimits,
    sample_weights: object = None,
) -> PackedDataset:
    """A data set from JSON ``features`` (rows of numbers), ``targets`` (labels or values) and
    optional ``sample_weights`` (a number per row)."""
    x = numeric_matrix(features, "features")
    limits.check("features", *x.shape)
    y = json_targets(task, targets, limits.max_label_chars)
    if y.dtype.kind == "U":
        limits.check_labels("targets", len(y), y.dtype.itemsize // LABEL_CHAR_BYTES)
    return build_dataset(
        name=name,
        task=task,
        source="json",
        x=x,
        y=y,
        target_field="targets",
        sample_weight=None if sample_weights is None else json_weights(sample_weights),
        weight_field="sample_weights",
    )


def json_weights(value: object) -> np.ndarray:
    """JSON ``sample_weights``: a flat list of numbers, the first that is not one named."""
    if not isinstance(value, list) or any(isinstance(item, list) for item in value):
        raise DataError("sample_weights", "must be a list with one number per row")
    return numeric_array(np.array(json_numbers(value, "sample_weights")), value, "sample_weights")


def json_targets(task: Task, targets: object, max_label_chars: int) -> np.ndarray:
    """JSON ``targets`` as an array: labels as given, regression values as finite float64.

    numpy pads every string to the longest, so a string over ``max_label_chars`` is refused
    before the array is made: one long label among many rows would take gigabytes.
    """
    if not isinstance(targets, list):
        raise DataError("targets", "must be a list with one entry per row")
    long_text = first_long_text(targets, max_label_chars)
    if long_text is not None:
        if task is Task.REGRESSION:
            json_numbers(targets, "targets")  # raises, naming the first cell not a number
        path, length = long_text
        check_label_chars("targets" + path, length, max_label_chars)
    try:
        y = np.array(targets)
    except ValueError:
        raise DataError("targets", "rows have different lengths") from None
    return numeric_array(y, targets, "targets") if task is Task.REGRESSION else y


def first_long_text(value: list, max_chars: int) -> tuple[str, int] | None:
    """The place (``[row]``, ``[row][column]``...) and length of a string in nested lists
    ``value`` longer than ``max_chars``, or None. Rows are scanned in place, a cell at a time
    (2-D regression targets of a million rows cost about what numpy's own pass does); only
    lists nested deeper wait on a stack, so no depth of nesting recurses."""
    pending = [("", value)]
    while pending:
        path, items = pending.pop()
        for index, item in enumerate(items):
            if isinstance(item, list):
                for column, cell in enumerate(item):
                    if isinstance(cell, str) and len(cell) > max_chars:
                        return f"{path}[{index}][{column}]", len(cell)
                    if isinstance(cell, list):
                        pending.append((f"{path}[{index}][{column}]", cell))
            elif isinstance(item, str) and len(item) > max_chars:
                return f"{path}[{index}]", len(item)
    return None


def dataset_from_sample(sample_name: str, name: str | None) -> PackedDataset:
    """A data set from one of the built-in samples (``service.datasets.samples.SAMPLE_NAMES``)."""
    sample = load_sample(sample_name)
    return build_dataset(
        name=name or sample.name,
        task=Task(sample.task),
        source="builtin",
        x=sample.X,
        y=sample.y,
        target_field="builtin",
    )


@dataclass(frozen=True)
class Header:
    """A table's columns: their names, or None for a CSV file without a header row (columns then
    go by their 0-based number), and how many there are."""

    names: list[str] | None
    width: int

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each header name's position (its first, when a CSV header repeats it): a lookup
        per name, so that matching thousands of columns stays linear."""
        positions: dict[str, int] = {}
        for index, name in enumerate(self.names or ()):
            positions.setdefault(name, index)
        return positions

    def label(self, index: int) -> str:
        """Column ``index`` as messages name it: its quoted name, or its number."""
        return repr(self.names[index]) if self.names is not None else str(index)


@dataclass(frozen=True)
class ColumnChoice:
    """Which columns of a file are the ``targets``, and which the features: ``features`` as
    listed, or else every other column but those in ``drop``; by header name, or by 0-based
    number without one."""

    targets: Sequence[str]
    features: Sequence[str] | None = None
    drop: Sequence[str] = ()
    weight: str | None = None


def chosen_columns(header: Header, choice: ColumnChoice) -> tuple[list[int], list[int]]:
    """Positions of the target columns and of the feature columns (never the weight column)."""
    if not choice.targets:
        raise DataError("target", "is required for csv and parquet files")
    targets = column_indices(header, choice.targets, "target")
    weight = weight_column(header, choice, targets)
    return targets, feature_indices(header, choice, targets + ([] if weight is None else [weight]))


def weight_column(header: Header, choice: ColumnChoice, targets: list[int]) -> int | None:
    """The position of the column of row weights the upload names, if it names one."""
    if choice.weight is None:
        return None
    weight = column_index(header, choice.weight, "weight")
    if weight in targets:
        raise DataError("weight", f"column {header.label(weight)} is a target")
    return weight


def feature_indices(header: Header, choice: ColumnChoice, targets: list[int]) -> list[int]:
    """Positions of the feature columns, given the positions of the ``targets``."""
    if choice.features is not None:
        return chosen_indices(header, choice.features, targets, "features")
    dropped = chosen_indices(header, choice.drop, targets, "drop")
    left_out = {*targets, *dropped}
    features = [index for index in range(header.width) if index not in left_out]
    if not features and dropped:
        raise DataError("drop", "leaves no feature columns")
    if not features:
        raise DataError("file", "has no feature columns besides the target")
    return features


def chosen_indices(
    header: Header, names: Sequence[str], targets: list[int], field: str
) -> list[int]:
    """Positions of the columns ``field`` lists, none of them a target."""
    indices = column_indices(header, names, field)
    target_set = set(targets)
    clash = [index for index in indices if index in target_set]
    if clash:
        raise DataError(field, f"column {header.label(clash[0])} is a target")
    return indices


def column_indices(header: Header, names: Sequence[str], field: str) -> list[int]:
    """Positions of the columns ``names``, each known and listed once."""
    indices = [column_index(header, name, field) for name in names]
    repeated = [index for index, count in Counter(indices).items() if count > 1]
    if repeated:
        raise DataError(field, f"lists column {header.label(repeated[0])} twice")
    return indices


def column_index(header: Header, name: str, field: str) -> int:
    """The position of column ``name``: a header name, or a 0-based number without a header."""
    if header.names is not None:
        if name not in header.positions:
            listed = ", ".join(header.names)
            raise DataError(field, f"no column {name!r}; the columns are: {listed}")
        return header.positions[name]
    if not (name.isdigit() and int(name) < header.width):
        raise DataError(field, f"without a header, name columns by number 0..{header.width - 1}")
    return int(name)


def column_names(header: Header, indices: list[int]) -> list[str]:
    """The names of the columns at ``indices``: header names, or their numbers."""
    return [header.names[index] if header.names is not None else str(index) for index in indices]


def class_labels(labels: np.ndarray) -> np.ndarray:
    """Text labels read from a file, stripped: as int64 when they all are integers."""
    labels = np.strings.strip(labels)
    try:
        return labels.astype(np.int64)
    except (ValueError, OverflowError):
        return labels
