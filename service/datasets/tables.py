"""CSV and Parquet files read with pyarrow into float64 arrays, every error naming its row.

pyarrow parses a CSV file on every core, block by block, straight into one float64 array: no
string per cell, no whole table held. It parses the file's bytes, read once: from a Python file
object each block would wait for the GIL (seconds per upload while another thread of the
process is busy). A Parquet file is read one column at a time into such an array.

When pyarrow refuses a CSV file (a cell that is not a number, a short line) or a value is not
finite, the csv module reads the file again, as a stream and only as far as the row in question,
so that the error names the line the row starts on (counting the header, blank lines and line
breaks inside quoted values), the column and the cell's text, as the csv module's own parse
always did. Parquet columns carry types: a column that does not hold numbers is named by its
type, a cell by its 0-based row.
"""

import csv
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from service.datasets.ingest import DataLimits, Header, first_non_finite, inferred_task
from service.vocabulary import DataError, Task

# malloc, as numpy's arrays: memory one frees serves the other.
MEMORY_POOL = pa.system_memory_pool()
PARSE_OPTIONS = pa_csv.ParseOptions(newlines_in_values=True)
# pyarrow's streaming reader parses a block at a time (on one core); the blocks in flight take
# memory (about 18 MB at 256 kB, 57 MB at its default of 1 MB), and 256 kB is as fast (64 kB is
# not). A row must fit in a block: a longer one makes the whole file one block.
BLOCK_BYTES = 256 * 1024
CONVERSION_ERROR = "CSV conversion error"
LONG_ROW_ERROR = "straddling object"
# A label is stored as a fixed-width string: one long label makes every row as long.
MAX_LABEL_CHARS = 256


@dataclass(frozen=True)
class CsvFile:
    """A CSV file's bytes, its ``header``, the offset where its data rows start, and the
    request ``field`` its problems are reported on."""

    data: bytes
    header: Header
    data_start: int
    field: str
    block_size: int = BLOCK_BYTES

    def data_bytes(self) -> int:
        """The size of the file from its first data row on."""
        return len(self.data) - self.data_start


class TextLines:
    """The lines of a binary stream as text (UTF-8, a BOM dropped), counting the bytes read."""

    def __init__(self, stream: BinaryIO, errors: str = "strict"):
        self.stream = stream
        self.errors = errors
        self.bytes_read = 0

    def __iter__(self) -> "TextLines":
        return self

    def __next__(self) -> str:
        line = self.stream.readline()
        if not line:
            raise StopIteration
        encoding = "utf-8-sig" if self.bytes_read == 0 else "utf-8"
        self.bytes_read += len(line)
        return line.decode(encoding, self.errors)


def numbered_rows(lines: TextLines) -> Iterator[tuple[int, list[str]]]:
    """The rows of ``lines`` that are not blank, each with the line it starts on."""
    reader = csv.reader(lines)
    start = 1
    for row in reader:
        if row:
            yield start, row
        start = reader.line_num + 1


def open_csv(data: bytes, header: bool, field: str = "file") -> CsvFile:
    """The CSV file ``data``, its first row read: the column names, or without a ``header``
    only how many columns there are."""
    lines = TextLines(io.BytesIO(data))
    try:
        _, first = next(numbered_rows(lines), (0, None))
    except UnicodeDecodeError:
        raise DataError(field, "is not UTF-8 text") from None
    except csv.Error as error:
        raise DataError(field, f"is not valid CSV: {error}") from None
    if first is None:
        raise DataError(field, "has no data rows")
    names = [name.strip() for name in first] if header else None
    return CsvFile(data, Header(names, len(first)), lines.bytes_read if header else 0, field)


@dataclass(frozen=True)
class NumberColumns:
    """Number columns read from a file.

    values : ndarray (n_rows, n_columns), float64; undefined in a column of ``not_numbers``
    not_numbers : {position: the first row whose cell is not a number (text, a null)}
    labels : the label column, when one was asked for
    """

    values: np.ndarray
    not_numbers: dict[int, int]
    labels: pa.ChunkedArray | None


CellError = Callable[[int, int, str], DataError]


def checked_numbers(numbers: NumberColumns, positions: range, cell_error: CellError) -> np.ndarray:
    """The columns ``positions`` of ``numbers.values`` (a view); the first cell that is not a
    number, else the first that is not finite, raises ``cell_error(row, position, problem)``."""
    missing = [(numbers.not_numbers[p], p) for p in positions if p in numbers.not_numbers]
    if missing:
        row, position = min(missing)
        raise cell_error(row, position, "is not a number")
    values = numbers.values[:, positions.start : positions.stop]
    index = first_non_finite(values)
    if index is not None:
        row, position = index
        raise cell_error(row, positions.start + position, "is not a finite number")
    return values


# --- CSV --------------------------------------------------------------------------------------


def read_csv_numbers(
    csv_file: CsvFile, numbers: list[int], labels: list[int], limits: DataLimits | None = None
) -> NumberColumns:
    """The columns ``numbers`` as float64 and ``labels`` as text, at most as many rows as
    ``limits`` allow for ``len(numbers)`` columns. When pyarrow finds a cell that is not a
    number, the file is read again as text and parsed as Python's ``float`` parses it, to
    find the cell (or accept what pyarrow does not, such as ``1_000``)."""
    for as_text in (False, True):
        try:
            return stream_numbers(csv_file, numbers, labels, limits, as_text)
        except pa.ArrowException as error:
            if LONG_ROW_ERROR in str(error) and csv_file.block_size == BLOCK_BYTES:
                whole = replace(csv_file, block_size=csv_file.data_bytes() + 1)
                return read_csv_numbers(whole, numbers, labels, limits)
            if as_text or CONVERSION_ERROR not in str(error):
                raise structure_error(csv_file, error) from None
    raise AssertionError("unreachable: the text read returns or raises")


def stream_numbers(
    csv_file: CsvFile,
    numbers: list[int],
    labels: list[int],
    limits: DataLimits | None,
    as_text: bool,
) -> NumberColumns:
    """pyarrow's streaming read, block by block into one array: no whole table in memory."""
    values = np.empty((row_capacity(csv_file, len(numbers), limits), len(numbers)))
    kind = pa.string() if as_text else pa.float64()
    reader = arrow_reader(csv_file, column_types(numbers, kind, labels))
    not_numbers, label_chunks, rows = {}, [], 0
    for batch in reader:
        if rows + batch.num_rows > len(values):  # a row shorter than row_capacity assumes
            values = np.concatenate([values[:rows], np.empty_like(values)])
        for position in range(len(numbers)):
            out = values[rows : rows + batch.num_rows, position]
            if not as_text:
                out[:] = batch.column(position).to_numpy()
            elif position not in not_numbers:
                bad_row = fill_from_text(out, batch.column(position))
                if bad_row is not None:
                    not_numbers[position] = rows + bad_row
        label_chunks += batch.columns[len(numbers) :]
        rows += batch.num_rows
        check_size(csv_file, rows, len(numbers), limits)
    if rows == 0:
        raise DataError(csv_file.field, "has no data rows")
    text = pa.chunked_array(label_chunks, pa.string()) if labels else None
    return NumberColumns(values[:rows], not_numbers, text)


def column_types(
    columns: list[int], kind: pa.DataType, labels: list[int]
) -> dict[str, pa.DataType]:
    """pyarrow's types by column name (a column's position): ``columns``, then ``labels``."""
    return {str(i): kind for i in columns} | {str(i): pa.string() for i in labels}


def arrow_reader(csv_file: CsvFile, types: dict[str, pa.DataType]) -> pa.RecordBatchReader:
    """pyarrow's streaming reader of the data rows, the columns of ``types`` in their order; no
    cell is null (an empty cell is not a number)."""
    rows = pa.py_buffer(csv_file.data)[csv_file.data_start :]  # a view: no copy
    names = [str(index) for index in range(csv_file.header.width)]
    convert = pa_csv.ConvertOptions(
        column_types=types,
        include_columns=list(types),
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return pa_csv.open_csv(
        pa.BufferReader(rows),
        read_options=pa_csv.ReadOptions(column_names=names, block_size=csv_file.block_size),
        parse_options=PARSE_OPTIONS,
        convert_options=convert,
        memory_pool=MEMORY_POOL,
    )


def row_capacity(csv_file: CsvFile, n_numbers: int, limits: DataLimits | None) -> int:
    """At least as many rows as the rest of the file can hold: each row has a separator or a
    line end per column and a character per number. The array is allocated that long; pages
    past the rows read are never written, so they never take memory."""
    capacity = csv_file.data_bytes() // (csv_file.header.width + n_numbers - 1) + 1
    if limits is not None:
        capacity = min(capacity, limits.max_rows + 1, limits.max_cells // n_numbers + 1)
    return capacity


def check_size(csv_file: CsvFile, rows: int, n_numbers: int, limits: DataLimits | None) -> None:
    if limits is not None:
        limits.check(csv_file.field, rows, n_numbers)


def structure_error(csv_file: CsvFile, error: pa.ArrowException) -> DataError:
    """The error for a file pyarrow cannot split into rows, naming the first short or long
    line as the csv module reads it."""
    message = str(error)
    if "Empty CSV file" in message:
        return DataError(csv_file.field, "has no data rows")
    if "invalid UTF8" in message:
        return DataError(csv_file.field, "is not UTF-8 text")
    width = csv_file.header.width
    for line, row in data_rows(csv_file, with_header=True):
        if len(row) != width:
            return DataError(csv_file.field, f"line {line} has {len(row)} values; expected {width}")
    return DataError(csv_file.field, f"is not valid CSV: {message}")


def data_rows(csv_file: CsvFile, with_header: bool = False) -> Iterator[tuple[int, list[str]]]:
    """The file's rows again from its start, with their lines, by the csv module."""
    rows = numbered_rows(TextLines(io.BytesIO(csv_file.data), errors="replace"))
    skip = 1 if csv_file.header.names is not None and not with_header else 0
    try:
        yield from itertools.islice(rows, skip, None)
    except csv.Error as error:  # e.g. a field over the csv module's 128 kB limit
        raise DataError(csv_file.field, f"is not valid CSV: {error}") from None


def csv_cell_errors(csv_file: CsvFile, columns: list[int], field: str) -> CellError:
    """``field``'s errors for the cells of the number ``columns``: line, column and text."""

    def cell_error(row: int, position: int, problem: str) -> DataError:
        line, values = next(itertools.islice(data_rows(csv_file), row, None))
        column = columns[position]
        text = values[column] if column < len(values) else ""
        place = f"line {line}, column {csv_file.header.label(column)}"
        return DataError(field, f"{place}: {text!r} {problem}")

    return cell_error


def fill_from_text(out: np.ndarray, cells: pa.Array) -> int | None:
    """Write text ``cells`` parsed as Python's ``float`` parses them into ``out``; the row of
    the first that is not a number, else None."""
    try:
        out[:] = pc.cast(cells, pa.float64()).to_numpy()
    except pa.ArrowInvalid:  # e.g. "1_000", which float() reads, or " 1" that pyarrow trims
        return python_floats(out, cells.to_pylist())
    return None


def python_floats(out: np.ndarray, cells: list[str]) -> int | None:
    for row, cell in enumerate(cells):
        try:
            out[row] = float(cell)
        except ValueError:
            return row
    return None


def csv_column_task(cells: pa.ChunkedArray) -> Task:
    """The task a CSV target column (as text) suggests: classes when a cell is not a number
    (a word, true or false), else as its numbers say (``inferred_task``). Blank cells are left
    out: a missing value, which the read of the data set refuses by its line."""
    present = cells.filter(pc.not_equal(pc.utf8_trim_whitespace(cells), ""))
    numbers = np.empty(len(present))
    if fill_from_text(numbers, present) is not None:
        return Task.CLASSIFICATION
    return inferred_task(numbers)


def text_labels(values: pa.ChunkedArray, label: str, field: str) -> np.ndarray:
    """A text column as a fixed-width string array, each label at most ``MAX_LABEL_CHARS``;
    made from its few distinct labels, not from a Python string per row."""
    longest = pc.max(pc.utf8_length(values)).as_py() or 0
    if longest > MAX_LABEL_CHARS:
        message = f"column {label} has a label of {longest} characters; the limit is "
        raise DataError(field, message + str(MAX_LABEL_CHARS))
    encoded = pc.dictionary_encode(values.combine_chunks())
    distinct = np.array(encoded.dictionary.to_pylist(), dtype=f"<U{max(longest, 1)}")
    return distinct[encoded.indices.to_numpy()]


# --- Parquet ----------------------------------------------------------------------------------


def open_parquet(stream: BinaryIO) -> tuple[pq.ParquetFile, Header]:
    """The Parquet file in ``stream`` and its columns; nothing but the footer is read yet."""
    try:
        parquet = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DataError("file", f"is not a Parquet file: {error}") from None
    names = [name for name in parquet.schema_arrow.names if name not in pandas_index(parquet)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError("file", f"has more than one column named {repeated[0]!r}")
    return parquet, Header(names, len(names))


def pandas_index(parquet: pq.ParquetFile) -> set[str]:
    """The columns that hold a pandas DataFrame's index (``to_parquet`` writes one unless it is
    a plain range): row labels, not features. Metadata not as pandas writes it names none."""
    try:
        metadata = parquet.schema_arrow.pandas_metadata
    except ValueError:  # not JSON
        return set()
    index = metadata.get("index_columns") if isinstance(metadata, dict) else None
    return {name for name in index if isinstance(name, str)} if isinstance(index, list) else set()


def read_parquet_numbers(
    parquet: pq.ParquetFile, header: Header, numbers: list[int], labels: list[int]
) -> NumberColumns:
    """The columns ``numbers`` (of numeric types) as float64 and ``labels`` as they are, one
    column at a time (the format is made for it) into one array: no whole table in memory."""
    if parquet.metadata.num_rows == 0:
        raise DataError("file", "has no data rows")
    values = np.empty((parquet.metadata.num_rows, len(numbers)))
    not_numbers = {}
    for position, column in enumerate(numbers):
        cells = read_parquet_column(parquet, header.names[column])
        if cells.null_count:
            not_numbers[position] = pc.index(pc.is_null(cells), True).as_py()
            continue
        # An integer beyond 2**53 is rounded to the nearest float64, as a CSV cell is.
        fill_column(values[:, position], pc.cast(cells, pa.float64(), safe=False))
    text = read_parquet_column(parquet, header.names[labels[0]]) if labels else None
    return NumberColumns(values, not_numbers, text)


def read_parquet_column(parquet: pq.ParquetFile, name: str) -> pa.ChunkedArray:
    try:
        cells = parquet.read(columns=[name]).column(0)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DataError("file", f"is not a valid Parquet file: {error}") from None
    if len(cells) != parquet.metadata.num_rows:
        raise DataError("file", f"column {name!r} has {len(cells)} rows, not as many as the file")
    return cells


def fill_column(out: np.ndarray, cells: pa.ChunkedArray) -> None:
    """Write float64 ``cells`` into ``out``, chunk by chunk."""
    start = 0
    for chunk in cells.chunks:
        out[start : start + len(chunk)] = chunk.to_numpy()
        start += len(chunk)


NUMBER_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_decimal)


def require_number_types(schema: pa.Schema, header: Header, columns: list[int], field: str):
    """Refuse, before reading them, ``columns`` whose type is not numbers."""
    for column in columns:
        kind = schema.field(header.names[column]).type
        if not any(is_kind(kind) for is_kind in NUMBER_TYPES):
            raise DataError(field, f"column {header.label(column)} holds {kind}, not numbers")


def parquet_cell_errors(numbers: NumberColumns, header: Header, columns: list[int], field: str):
    """``field``'s errors for the cells of the number ``columns``: row (from 0) and column."""

    def cell_error(row: int, position: int, problem: str) -> DataError:
        is_null = numbers.not_numbers.get(position) == row
        value = "null" if is_null else numbers.values[row, position]
        label = header.label(columns[position])
        return DataError(field, f"row {row}, column {label}: {value} {problem}")

    return cell_error


def parquet_column_task(cells: pa.ChunkedArray) -> Task:
    """The task a Parquet target column suggests: classes for text and booleans, numbers as
    their values say (``inferred_task``; nulls left out, refused by the read proper), and
    regression for another type, which that read refuses naming the type."""
    cells = plain_values(cells)
    if is_text(cells.type) or pa.types.is_boolean(cells.type):
        return Task.CLASSIFICATION
    if not any(is_kind(cells.type) for is_kind in NUMBER_TYPES):
        return Task.REGRESSION
    return inferred_task(pc.cast(pc.drop_null(cells), pa.float64(), safe=False).to_numpy())


def plain_values(cells: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary-encoded column (pandas' categories) as its values."""
    return cells.cast(cells.type.value_type) if pa.types.is_dictionary(cells.type) else cells


def is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def parquet_labels(values: pa.ChunkedArray, label: str) -> np.ndarray:
    """Class labels from a Parquet column of integers, whole floats, text or booleans (the
    labels "false" and "true")."""
    if values.null_count:
        row = pc.index(pc.is_null(values), True).as_py()
        raise DataError("target", f"row {row}, column {label}: null is not a class label")
    values = plain_values(values)
    if pa.types.is_boolean(values.type):
        values = values.cast(pa.string())
    if is_text(values.type):
        return text_labels(values, label, "target")
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return values.to_numpy()
    message = f"column {label} holds {values.type}; labels are integers, text or booleans"
    raise DataError("target", message)
