"""Turning uploads into stored data sets: JSON arrays, CSV files and the built-in samples.

Everything here works on plain values and ndarrays; a problem with the data raises ``DataError``
naming the field, which the API answers with a 422.
"""

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.db.models import Dataset, Task
from service.db.npz import arrays_to_npz
from service.samples import load_sample


class DataError(ValueError):
    """Data the service cannot train on; ``field`` is the request field to fix."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    @property
    def path(self) -> str:
        """Where the error is, as ``SpecError.path`` says it: the request field."""
        return self.field


@dataclass(frozen=True)
class DataLimits:
    """The largest data set accepted: rows, and cells (rows x features)."""

    max_rows: int
    max_cells: int

    def check(self, field: str, n_rows: int, n_columns: int) -> None:
        if n_rows > self.max_rows:
            limit = f"the limit is {self.max_rows} (MAX_DATASET_ROWS)"
            raise DataError(field, f"has {n_rows} rows; {limit}")
        if n_rows * n_columns > self.max_cells:
            limit = f"the limit is {self.max_cells} (MAX_DATASET_CELLS)"
            raise DataError(field, f"has {n_rows * n_columns} cells; {limit}")


def numeric_matrix(value: object, field: str) -> np.ndarray:
    """``value`` as a finite float64 array of shape (n_rows, n_columns), at least one row."""
    if not isinstance(value, list) or not value:
        raise DataError(field, "must be a non-empty list of rows")
    widths = {len(row) if isinstance(row, list) else -1 for row in value}
    if -1 in widths:
        raise DataError(field, "each row must be a list of numbers")
    if len(widths) > 1:
        raise DataError(field, f"rows have different lengths: {sorted(widths)}")
    try:
        array = np.array(value)
    except ValueError:  # rows nested deeper in some places than in others
        raise DataError(field, "each row must be a flat list of numbers") from None
    if array.ndim != 2:
        raise DataError(field, "each row must be a flat list of numbers")
    if array.shape[1] == 0:
        raise DataError(field, "rows must not be empty")
    if array.dtype.kind not in "iuf":
        raise DataError(field, "must contain numbers only")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        row, column = np.argwhere(~np.isfinite(array))[0]
        raise DataError(f"{field}[{row}][{column}]", "NaN and infinity are not allowed")
    return array


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
    """Finite float64 targets of shape (n,) or (n, n_targets)."""
    if y.ndim not in (1, 2) or y.dtype.kind not in "iuf":
        raise DataError(field, "regression targets must be numbers, one or a list per row")
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        raise DataError(field, "NaN and infinity are not allowed")
    return y


def compact_features(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 when that loses nothing (pixels, counts, most sensor data), else as is.

    Half the bytes to store and to load for every job, and no conversion before float32 training.
    """
    narrow = x.astype(np.float32)
    return narrow if np.array_equal(narrow, x) else x


TARGET_READERS = {Task.CLASSIFICATION: classification_labels, Task.REGRESSION: regression_targets}


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
) -> Dataset:
    """A new ``Dataset`` row from features ``x`` (n, n_features) and raw targets ``y``."""
    y = TARGET_READERS[task](y, target_field)
    if len(y) != len(x):
        raise DataError(target_field, f"has {len(y)} rows but the features have {len(x)}")
    summary = target_summary(task, y)
    if task is Task.CLASSIFICATION and summary["n_outputs"] < 2:
        raise DataError(target_field, "classification needs at least 2 classes")
    return Dataset(
        name=name,
        task=task,
        source=source,
        n_samples=len(x),
        n_features=x.shape[1],
        feature_names=list(feature_names) if feature_names else None,
        target_names=list(target_names) if target_names else None,
        arrays=arrays_to_npz(X=compact_features(x), y=y),
        **summary,
    )


def dataset_from_json(
    name: str, task: Task, features: object, targets: object, limits: DataLimits
) -> Dataset:
    """A data set from JSON ``features`` (rows of numbers) and ``targets`` (labels or values)."""
    x = numeric_matrix(features, "features")
    limits.check("features", *x.shape)
    if not isinstance(targets, list):
        raise DataError("targets", "must be a list with one entry per row")
    try:
        y = np.array(targets)
    except ValueError:
        raise DataError("targets", "rows have different lengths") from None
    return build_dataset(name=name, task=task, source="json", x=x, y=y, target_field="targets")


def dataset_from_sample(sample_name: str, name: str | None) -> Dataset:
    """A data set from one of the built-in samples (``service.samples.SAMPLE_NAMES``)."""
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
class CsvTable:
    """A CSV file split into column names (or None) and rows of strings."""

    columns: list[str] | None
    rows: list[list[str]]


def read_csv(data: bytes, header: bool) -> CsvTable:
    """Parse CSV bytes (UTF-8, optional BOM); every row must have the same number of values."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("file", "is not UTF-8 text") from None
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as error:  # e.g. a field over the csv module's 128 kB limit
        raise DataError("file", f"is not valid CSV: {error}") from None
    columns = [name.strip() for name in rows.pop(0)] if header and rows else None
    if not rows:
        raise DataError("file", "has no data rows")
    width = len(columns) if columns else len(rows[0])
    for number, row in enumerate(rows, start=2 if header else 1):
        if len(row) != width:
            raise DataError("file", f"line {number} has {len(row)} values; expected {width}")
    return CsvTable(columns, rows)


def target_indices(table: CsvTable, targets: Sequence[str]) -> list[int]:
    """Column positions of the target columns: names with a header, 0-based numbers without."""
    width = len(table.rows[0])
    if table.columns is not None:
        missing = [name for name in targets if name not in table.columns]
        if missing:
            listed = ", ".join(table.columns)
            raise DataError("target", f"no column {missing[0]!r}; the columns are: {listed}")
        return [table.columns.index(name) for name in targets]
    if not all(name.isdigit() and int(name) < width for name in targets):
        raise DataError("target", f"without a header, name columns by number 0..{width - 1}")
    return [int(name) for name in targets]


def parse_numbers(cells: list[list[str]], names: Sequence[str], field: str) -> np.ndarray:
    """Float64 array from a table of strings, naming the first cell that is not a number."""
    try:
        array = np.array(cells, dtype=np.float64)
    except ValueError:
        for row_number, row in enumerate(cells):
            for name, cell in zip(names, row, strict=True):
                try:
                    float(cell)
                except ValueError:
                    raise DataError(
                        field, f"row {row_number + 1}, column {name!r}: {cell!r} is not a number"
                    ) from None
        raise
    if not np.isfinite(array).all():
        raise DataError(field, "NaN and infinity are not allowed")
    return array


def csv_targets(task: Task, cells: list[list[str]], names: Sequence[str]) -> np.ndarray:
    """Targets from CSV strings: class labels as ints when they all are, else strings."""
    if task is Task.REGRESSION:
        y = parse_numbers(cells, names, "target")
        return y[:, 0] if y.shape[1] == 1 else y
    if len(names) != 1:
        raise DataError("target", "classification takes exactly one target column")
    labels = np.array([row[0].strip() for row in cells])
    try:
        return labels.astype(np.int64)
    except ValueError:
        return labels


def dataset_from_csv(
    name: str,
    task: Task,
    data: bytes,
    targets: Sequence[str],
    header: bool,
    limits: DataLimits,
) -> Dataset:
    """A data set from a CSV file whose ``targets`` columns are the targets, the rest features."""
    table = read_csv(data, header)
    names = table.columns or [str(index) for index in range(len(table.rows[0]))]
    target_columns = target_indices(table, targets)
    feature_columns = [index for index in range(len(names)) if index not in target_columns]
    if not feature_columns:
        raise DataError("file", "has no feature columns besides the target")
    limits.check("file", len(table.rows), len(feature_columns))
    feature_names = [names[index] for index in feature_columns]
    target_names = [names[index] for index in target_columns]
    x = parse_numbers(
        [[row[index] for index in feature_columns] for row in table.rows], feature_names, "file"
    )
    y = csv_targets(
        task, [[row[index] for index in target_columns] for row in table.rows], target_names
    )
    return build_dataset(
        name=name,
        task=task,
        source="csv",
        x=x,
        y=y,
        target_field="target",
        feature_names=feature_names,
        target_names=target_names,
    )
