"""Data set files as uploaded: CSV, Parquet and ``.npz``, into arrays without a copy of the
table on the way (service/datasets/tables.py reads CSV and Parquet; see its notes on memory).

The format is the form's ``format``, else the file name's extension (``FORMAT_EXTENSIONS``),
else CSV. CSV and Parquet choose their columns alike (``ColumnChoice``; the form's ``weight``
names a column of row weights beside the targets); an ``.npz`` file names its arrays with the
same form fields, ``features`` (default ``X``) and ``target`` (``y``). An
``.npz`` array is sized from its header before it is read, so a small compressed file cannot
unpack into more than the limits allow, and one that would need pickle is refused.

Without the form's ``task``, the targets choose it (``ingest.inferred_task``): a table's target
column is read alone for that first, then again with the features as the task says.
"""

import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import PurePath
from typing import BinaryIO

import numpy as np
import pyarrow.parquet as pq

from service.datasets.ingest import (
    FILE_FORMATS,
    LABEL_CHAR_BYTES,
    ColumnChoice,
    DataLimits,
    Header,
    PackedDataset,
    build_dataset,
    chosen_columns,
    class_labels,
    column_names,
    first_non_finite,
    inferred_task,
    weight_column,
)
from service.datasets.tables import (
    CellError,
    CsvFile,
    LabelColumn,
    NumberColumns,
    checked_numbers,
    csv_cell_errors,
    csv_column_task,
    open_csv,
    open_parquet,
    parquet_cell_errors,
    parquet_column_task,
    parquet_labels,
    read_csv_numbers,
    read_parquet_numbers,
    require_number_types,
    text_labels,
)
from service.db.npz import read_npy_header
from service.memory import return_freed_memory
from service.vocabulary import DataError, Task


@dataclass(frozen=True)
class Upload:
    """A data set file and what the form says about it; ``stream`` is seekable, at its start;
    ``task`` None when the form names none."""

    name: str
    task: Task | None
    stream: BinaryIO
    columns: ColumnChoice
    header: bool = True


@dataclass(frozen=True)
class FileArrays:
    """What a file holds: features (n, n_features), raw targets for ``task`` (the form's, else
    inferred), and, for a table, the names of the columns they come from and the rows'
    weights (n,) when the form names a weight column."""

    task: Task
    x: np.ndarray
    y: np.ndarray
    feature_names: list[str] | None = None
    target_names: list[str] | None = None
    sample_weight: np.ndarray | None = None


# --- CSV and Parquet ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChosenColumns:
    """Positions of the columns a table's data set takes: ``numbers`` are read as numbers (the
    features, then regression targets, then the weight column), ``labels`` as class labels."""

    targets: list[int]
    features: list[int]
    numbers: list[int]
    labels: list[int]
    weight: int | None = None


def choose_columns(header: Header, choice: ColumnChoice, task: Task) -> ChosenColumns:
    targets, features = chosen_columns(header, choice)
    weight = weight_column(header, choice, targets)
    weights = [] if weight is None else [weight]
    if task is Task.REGRESSION:
        return ChosenColumns(targets, features, features + targets + weights, [], weight)
    if len(targets) != 1:
        raise DataError("target", "classification takes exactly one target column")
    return ChosenColumns(targets, features, features + weights, targets, weight)


def csv_arrays(upload: Upload, limits: DataLimits) -> FileArrays:
    """The file is parsed from its stream, a block at a time (service/datasets/tables.py): not
    held whole in memory beside its numbers."""
    csv_file = open_csv(upload.stream, upload.header)
    task = upload.task or csv_task(csv_file, upload.columns)
    chosen = choose_columns(csv_file.header, upload.columns, task)
    read = read_csv_numbers(csv_file, chosen.numbers, chosen.labels, limits)
    cell_errors = partial(csv_cell_errors, csv_file, chosen.numbers)
    x, y = split_columns(read, chosen, cell_errors)
    if y is None:
        label = csv_file.header.label(chosen.targets[0])
        y = class_labels(text_labels(read.labels, label, "target", limits))
    weights = weight_values(read, chosen, cell_errors)
    return named_arrays(task, x, y, csv_file.header, chosen, weights)


def csv_task(csv_file: CsvFile, choice: ColumnChoice) -> Task:
    """The task the target column's cells suggest; several target columns are regression."""
    targets, _ = chosen_columns(csv_file.header, choice)
    if len(targets) != 1:
        return Task.REGRESSION
    return csv_column_task(read_csv_numbers(csv_file, [], targets).labels)


def parquet_arrays(upload: Upload, limits: DataLimits) -> FileArrays:
    """Types and sizes come from the footer: the rows are checked before any column is read,
    the types before their columns are."""
    parquet, header = open_parquet(upload.stream)
    limits.check("file", parquet.metadata.num_rows, 1)
    task = upload.task or parquet_task(parquet, header, upload.columns)
    chosen = choose_columns(header, upload.columns, task)
    n_features = len(chosen.features)
    schema = parquet.schema_arrow
    require_number_types(schema, header, chosen.features, "file")
    n_numbers = len(chosen.numbers) - (chosen.weight is not None)
    require_number_types(schema, header, chosen.numbers[n_features:n_numbers], "target")
    require_number_types(schema, header, chosen.numbers[n_numbers:], "weight")
    limits.check("file", parquet.metadata.num_rows, len(chosen.numbers))
    read = read_parquet_numbers(parquet, header, chosen.numbers)
    cell_errors = partial(parquet_cell_errors, read, header, chosen.numbers)
    x, y = split_columns(read, chosen, cell_errors)
    if y is None:
        target = chosen.targets[0]
        column = LabelColumn(upload.stream, parquet, header.names[target], header.label(target))
        y = parquet_labels(column, limits)
    return named_arrays(task, x, y, header, chosen, weight_values(read, chosen, cell_errors))


def parquet_task(parquet: pq.ParquetFile, header: Header, choice: ColumnChoice) -> Task:
    """The task the target column's type and values suggest; several target columns are
    regression."""
    targets, _ = chosen_columns(header, choice)
    if len(targets) != 1:
        return Task.REGRESSION
    return parquet_column_task(parquet, header.names[targets[0]])


def split_columns(
    read: NumberColumns, chosen: ChosenColumns, cell_errors: Callable[[str], CellError]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (n, n_features), a view of ``read.values``, and regression targets (n,) or
    (n, n_targets), else None; the features' bad cells are named first, as they come first in
    a row. ``cell_errors(field)`` names a bad cell on ``field``."""
    n_features = len(chosen.features)
    x = checked_numbers(read, range(n_features), cell_errors("file"))
    if chosen.labels:
        return x, None
    targets = range(n_features, len(chosen.numbers) - (chosen.weight is not None))
    y = checked_numbers(read, targets, cell_errors("target")).copy()
    return x, y[:, 0] if y.shape[1] == 1 else y


def weight_values(
    read: NumberColumns, chosen: ChosenColumns, cell_errors: Callable[[str], CellError]
) -> np.ndarray | None:
    """The weight column (n,), the last of the numbers read, when the form names one; a cell
    that is not a finite number is named as ``cell_errors`` name them (a negative one, by
    ``build_dataset``)."""
    if chosen.weight is None:
        return None
    last = len(chosen.numbers) - 1
    return checked_numbers(read, range(last, last + 1), cell_errors("weight"))[:, 0].copy()


def named_arrays(
    task: Task,
    x: np.ndarray,
    y: np.ndarray,
    header: Header,
    chosen: ChosenColumns,
    sample_weight: np.ndarray | None = None,
) -> FileArrays:
    features, targets = column_names(header, chosen.features), column_names(header, chosen.targets)
    return FileArrays(task, x, y, features, targets, sample_weight)


# --- npz --------------------------------------------------------------------------------------

NUMBER_KINDS = "biuf"  # booleans, integers, floats


@dataclass(frozen=True)
class NpyMember:
    """An array of an ``.npz`` file as its header describes it, before it is read."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


def npz_arrays(upload: Upload, limits: DataLimits) -> FileArrays:
    features, target = npz_array_names(upload.columns)
    archive = open_npz(upload.stream)
    with archive:
        x_member = npy_member(archive, features, "features")
        y_member = npy_member(archive, target, "target")
        check_npz_sizes(x_member, y_member, limits)
        x = npz_features(read_member(archive, x_member), x_member.name)
        y = read_member(archive, y_member)
    task = upload.task or inferred_task(y)
    if task is Task.REGRESSION:
        y = npz_numbers(y, y_member.name, "target")
    elif y.dtype.kind == "b":
        y = np.where(y, "true", "false")  # the labels a Parquet file's booleans get
    return FileArrays(task, x, y)


def npz_array_names(choice: ColumnChoice) -> tuple[str, str]:
    """The names of the features and targets arrays: ``features`` and ``target``, each one
    name, by default ``X`` and ``y``."""
    if choice.drop:
        raise DataError("drop", "is for csv and parquet columns; name the .npz arrays instead")
    if choice.weight is not None:
        raise DataError("weight", "is for csv and parquet columns")
    names = []
    for field, given, default in (
        ("features", choice.features, "X"),
        ("target", choice.targets, "y"),
    ):
        if given and len(given) != 1:
            raise DataError(field, "names one array of the .npz file")
        names.append(given[0] if given else default)
    return names[0], names[1]


def open_npz(stream: BinaryIO) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise DataError("file", "is not an .npz file (a zip archive of .npy arrays)") from None


def npy_member(archive: zipfile.ZipFile, name: str, field: str) -> NpyMember:
    """The header of array ``name``, which ``field`` names; only numbers (and labels) are read:
    an object array would need pickle."""
    if f"{name}.npy" not in archive.namelist():
        arrays = ", ".join(sorted(member.removesuffix(".npy") for member in archive.namelist()))
        raise DataError(field, f"the file has no array {name!r}; its arrays are: {arrays}")
    try:
        with archive.open(f"{name}.npy") as file:
            shape, _fortran_order, dtype = read_npy_header(file, name)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as error:
        raise DataError("file", f"array {name!r} cannot be read: {error}") from None
    if dtype.hasobject:
        raise DataError("file", f"array {name!r} holds Python objects (pickle); refused")
    if dtype.kind not in NUMBER_KINDS and dtype.kind != "U":
        raise DataError(field, f"array {name!r} holds {dtype}, not numbers or text")
    return NpyMember(name, tuple(shape), dtype)


def check_npz_sizes(x: NpyMember, y: NpyMember, limits: DataLimits) -> None:
    """The limits checked on the headers, before anything is unpacked."""
    if len(x.shape) != 2 or x.dtype.kind not in NUMBER_KINDS:
        raise DataError("features", f"array {x.name!r} must be numbers of shape (rows, features)")
    if x.shape[0] == 0:
        raise DataError("file", "has no data rows")
    if x.shape[1] == 0:
        raise DataError("features", f"array {x.name!r} has no feature columns")
    limits.check("file", *x.shape)
    if len(y.shape) not in (1, 2) or y.shape[0] != x.shape[0]:
        message = f"array {y.name!r} has shape {y.shape}; it needs one row per row of {x.name!r}"
        raise DataError("target", message)
    if y.dtype.kind == "U":
        check_npz_labels(y, limits)
    else:
        limits.check("target", *(y.shape if len(y.shape) == 2 else (*y.shape, 1)))


def check_npz_labels(y: NpyMember, limits: DataLimits) -> None:
    """Text targets by their bytes, not their cells: as wide as the header says, on every
    row (a 200 kB file can hold 200 MB of them)."""
    width = y.dtype.itemsize // LABEL_CHAR_BYTES
    if width > limits.max_label_chars:
        message = f"array {y.name!r} holds labels of up to {width} characters"
        raise DataError("target", f"{message}; the limit is {limits.max_label_chars}")
    limits.check_labels("target", int(np.prod(y.shape)), width, f"array {y.name!r} ")


def read_member(archive: zipfile.ZipFile, member: NpyMember) -> np.ndarray:
    try:
        with archive.open(f"{member.name}.npy") as file:
            return np.lib.format.read_array(file, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as error:
        raise DataError("file", f"array {member.name!r} cannot be read: {error}") from None


def npz_features(x: np.ndarray, name: str) -> np.ndarray:
    """Features as float32 when they are, else float64, all finite."""
    return x if x.dtype == np.float32 and first_non_finite(x) is None else npz_numbers(x, name)


def npz_numbers(array: np.ndarray, name: str, field: str = "file") -> np.ndarray:
    """``array`` as finite float64; the first NaN or infinity is named by its row (and
    column)."""
    if array.dtype.kind not in NUMBER_KINDS:
        raise DataError(field, f"array {name!r} holds {array.dtype}, not numbers")
    numbers = array.astype(np.float64, copy=False)
    index = first_non_finite(numbers)
    if index is not None:
        place = ", ".join(f"{axis} {i}" for axis, i in zip(("row", "column"), index, strict=False))
        value = numbers[index]
        raise DataError(field, f"array {name!r}, {place}: {value} is not a finite number")
    return numbers


# --- Formats ----------------------------------------------------------------------------------

FILE_READERS: dict[str, Callable[[Upload, DataLimits], FileArrays]] = dict(
    zip(FILE_FORMATS, (csv_arrays, parquet_arrays, npz_arrays), strict=True)
)
FORMAT_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}


def format_of(filename: str | None) -> str:
    """The format a file name's extension says, CSV when it says none of ours."""
    return FORMAT_EXTENSIONS.get(PurePath(filename or "").suffix.lower(), "csv")


def dataset_from_file(file_format: str, upload: Upload, limits: DataLimits) -> PackedDataset:
    """A data set from an uploaded file in ``file_format`` (a key of ``FILE_READERS``); what
    the reader held besides the arrays is freed before they are packed (to a temporary file),
    and the arrays before the data set is returned to be stored, the memory they took handed
    back to the system (the insert does not set the upload's peak: service/db/blob_writes.py)."""
    arrays = FILE_READERS[file_format](upload, limits)
    dataset = build_dataset(
        name=upload.name,
        task=arrays.task,
        source=file_format,
        x=arrays.x,
        y=arrays.y,
        target_field="target",
        feature_names=arrays.feature_names,
        target_names=arrays.target_names,
        sample_weight=arrays.sample_weight,
    )
    del arrays
    return_freed_memory()
    return dataset
