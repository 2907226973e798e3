"""CSV and Parquet files read with pyarrow into float64 arrays, every error naming its row.

pyarrow parses a CSV file block by block, straight into one float64 array: no string per cell,
no whole table held, and not the whole file either: a file on disk (an upload werkzeug spooled)
is read by its descriptor, bytes in memory in place, both without the GIL (through a Python
file object each block would wait for it: seconds per upload while another thread of the
process is busy). A file of megabytes is parsed in two halves at once, on two cores, when the
first half's rows can be counted by its line breaks (``read_in_halves``). A Parquet file is read
one column at a time into such an array.

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
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from service.datasets.ingest import (
    LABEL_CHAR_BYTES,
    DataLimits,
    Header,
    first_non_finite,
    inferred_task,
)
from service.vocabulary import DataError, Task

# malloc, as numpy's arrays: memory one frees serves the other.
MEMORY_POOL = pa.system_memory_pool()
PARSE_OPTIONS = pa_csv.ParseOptions(newlines_in_values=True)
# pyarrow's streaming reader parses a block at a time (on one core); the blocks in flight take
# memory (about 18 MB at 256 kB, 57 MB at its default of 1 MB), and 256 kB is as fast (64 kB is
# not). A row must fit in a block: a longer one makes the whole file one block.
BLOCK_BYTES = 256 * 1024
# A file's data rows are parsed in two halves at once (two cores) from this size on: below it,
# a second thread and the scan for quotes would take longer than they save.
HALVES_MIN_BYTES = 4 * 1024 * 1024
# How far past the middle of the data rows a line break is looked for to cut them at, and the
# pieces the first half is read in to count its rows.
LINE_SEARCH_BYTES = 1024 * 1024
SCAN_PIECE_BYTES = 256 * 1024
LF, CR, QUOTE = b'\n\r"'
CONVERSION_ERROR = "CSV conversion error"
LONG_ROW_ERROR = "straddling object"


@dataclass(frozen=True)
class CsvFile:
    """A CSV file: its seekable ``stream`` (read again from its start for each pass), its
    ``size``, its ``header``, the offset where its data rows start, and the request ``field``
    its problems are reported on."""

    stream: BinaryIO
    size: int
    header: Header
    data_start: int
    field: str
    block_size: int = BLOCK_BYTES

    def data_bytes(self) -> int:
        """The size of the file from its first data row on."""
        return self.size - self.data_start


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


def open_csv(stream: BinaryIO, header: bool, field: str = "file") -> CsvFile:
    """The CSV file in seekable ``stream``, its first row read: the column names, or without a
    ``header`` only how many columns there are."""
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    lines = TextLines(stream)
    try:
        _, first = next(numbered_rows(lines), (0, None))
    except UnicodeDecodeError:
        raise DataError(field, "is not UTF-8 text") from None
    except csv.Error as error:
        raise DataError(field, f"is not valid CSV: {error}") from None
    if first is None:
        raise DataError(field, "has no data rows")
    names = [name.strip() for name in first] if header else None
    data_start = lines.bytes_read if header else 0
    return CsvFile(stream, size, Header(names, len(first)), data_start, field)


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
    in_halves = read_in_halves(csv_file, numbers, labels, limits)
    if in_halves is not None:
        return in_halves
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
    with arrow_file(csv_file.stream) as source:
        source.seek(csv_file.data_start)
        batches = arrow_reader(csv_file, source, column_types(numbers, kind, labels))
        values, not_numbers, label_chunks, rows = read_batches(
            csv_file, batches, values, len(numbers), limits, as_text
        )
    if rows == 0:
        raise DataError(csv_file.field, "has no data rows")
    text = pa.chunked_array(label_chunks, pa.string()) if labels else None
    return NumberColumns(values[:rows], not_numbers, text)


def read_batches(
    csv_file: CsvFile,
    batches: pa.RecordBatchReader,
    values: np.ndarray,
    n_numbers: int,
    limits: DataLimits | None,
    as_text: bool,
    rows: int = 0,
) -> tuple[np.ndarray, dict[int, int], list[pa.Array], int]:
    """The batches' number columns written into ``values`` from row ``rows`` on (grown when a
    row is shorter than ``row_capacity`` assumes), as ``stream_numbers`` returns them: the
    values, the first row of each column that is not a number, the label columns' chunks, and
    the rows in ``values`` now."""
    not_numbers, label_chunks = {}, []
    for batch in batches:
        if rows + batch.num_rows > len(values):  # rows shorter than row_capacity assumes, or
            # more in one block than the limits let it hold (refused just below)
            more = np.empty((max(len(values), batch.num_rows), n_numbers))
            values = np.concatenate([values[:rows], more])
        out = values[rows : rows + batch.num_rows]
        if as_text:
            fill_numbers_from_text(out, batch, not_numbers, rows)
        else:
            out[:] = number_rows(batch, n_numbers)
        label_chunks += batch.columns[n_numbers:]
        rows += batch.num_rows
        check_size(csv_file, rows, n_numbers, limits)
    return values, not_numbers, label_chunks, rows


def fill_numbers_from_text(
    out: np.ndarray, batch: pa.RecordBatch, not_numbers: dict[int, int], first_row: int
) -> None:
    """Each of ``out``'s columns read from the batch's column of text at its position; a
    column's first cell that is not a number is noted in ``not_numbers`` (its row in the
    file's data, counted from ``first_row``), and the column is not read again."""
    for position in range(out.shape[1]):
        if position in not_numbers:
            continue
        bad_row = fill_from_text(out[:, position], batch.column(position))
        if bad_row is not None:
            not_numbers[position] = first_row + bad_row


def number_rows(batch: pa.RecordBatch, n_numbers: int) -> np.ndarray:
    """The batch's first ``n_numbers`` columns (float64, no nulls) as rows (n, n_numbers): made
    by pyarrow in one call without the GIL, not by a Python loop writing a column at a time
    across the rows, which took twice as long and held the GIL the other half's thread needs
    (docs/benchmarks.md, issue 29, eighth session)."""
    if n_numbers == 0:
        return np.empty((batch.num_rows, 0))
    numbers = batch.select(range(n_numbers))
    return numbers.to_tensor(row_major=True, memory_pool=MEMORY_POOL).to_numpy()


def read_in_halves(
    csv_file: CsvFile, numbers: list[int], labels: list[int], limits: DataLimits | None
) -> NumberColumns | None:
    """The data rows parsed as numbers on two cores, into the one array ``stream_numbers``
    fills: cut at a line break past their middle (``cut_in_halves``), the first half parsed
    into its first rows and the second half, by a second thread, into the rows after them.
    The peak is the serial parse's and a second reader's blocks in flight.

    None when the file is not cut, or when either half fails in any way (a cell that is not a
    number, a short line, a limit, a row count not as counted): the serial parse then reads
    the file again and reports the problem exactly as it always has."""
    types = column_types(numbers, pa.float64(), labels)
    with arrow_file(csv_file.stream) as source:
        cut = cut_in_halves(csv_file, source)
        if cut is None:
            return None
        values = np.empty((row_capacity(csv_file, len(numbers), limits), len(numbers)))
        if cut.first_rows >= len(values):
            return None
        halves = [
            (source.get_stream(csv_file.data_start, cut.offset - csv_file.data_start), 0),
            (source.get_stream(cut.offset, csv_file.size - cut.offset), cut.first_rows),
        ]

        def read_half(stream: pa.NativeFile, start: int) -> tuple[np.ndarray, list, int]:
            batches = arrow_reader(csv_file, stream, types)
            filled, _, chunks, rows = read_batches(
                csv_file, batches, values, len(numbers), limits, False, start
            )
            return filled, chunks, rows

        with ThreadPoolExecutor(1, thread_name_prefix="csv-second-half") as executor:
            second = executor.submit(read_half, *halves[1])
            try:
                first_values, first_labels, first_end = read_half(*halves[0])
                second_values, second_labels, rows = second.result()
            except (pa.ArrowException, DataError):
                return None
    if first_end != cut.first_rows or first_values is not values or second_values is not values:
        return None  # a count not as the line breaks said, or the array grown: not as planned
    text = pa.chunked_array(first_labels + second_labels, pa.string()) if labels else None
    return NumberColumns(values[:rows], {}, text)


@dataclass(frozen=True)
class Cut:
    """Where a CSV file's data rows are cut in two: the offset the second half starts at, and
    how many rows the first half holds."""

    offset: int
    first_rows: int


def cut_in_halves(csv_file: CsvFile, source: pa.NativeFile) -> Cut | None:
    """The data rows cut just past the first line break after their middle, when they are long
    enough to be worth it and are not read as one block (a row longer than a block); else
    None, as when the first half's rows cannot be told by counting its line breaks
    (``line_count``)."""
    if csv_file.data_bytes() < HALVES_MIN_BYTES or csv_file.block_size != BLOCK_BYTES:
        return None
    middle = csv_file.data_start + csv_file.data_bytes() // 2
    line_end = source.read_at(LINE_SEARCH_BYTES, middle).find(b"\n")
    if line_end < 0 or middle + line_end + 1 >= csv_file.size:
        return None
    offset = middle + line_end + 1
    rows = line_count(source, csv_file.data_start, offset)
    return None if rows is None else Cut(offset, rows)


def line_count(source: pa.NativeFile, start: int, end: int) -> int | None:
    """The lines of ``source`` from ``start`` to ``end`` (just past a line break), each a row
    as pyarrow reads it, else None: when a quote character may open a value holding a line
    break, a line is empty (pyarrow skips it), or a line ends in a lone ``\\r``. Read a piece
    at a time into one buffer, each piece with the two bytes after it."""
    first = source.read_at(2, start)
    if first.startswith(b"\n") or first == b"\r\n":
        return None
    buffer = np.zeros(SCAN_PIECE_BYTES + 2, np.uint8)
    lines = 0
    for offset in range(start, end, SCAN_PIECE_BYTES):
        size = min(SCAN_PIECE_BYTES, end - offset)
        source.seek(offset)
        buffer[source.readinto(memoryview(buffer)[: size + 2]) :] = 0
        piece_lines = line_breaks(buffer, size)
        if piece_lines is None:
            return None
        lines += piece_lines
    return lines


def line_breaks(buffer: np.ndarray, size: int) -> int | None:
    """The line breaks among the first ``size`` bytes of ``buffer`` (which holds two more, to
    see a pair across pieces), or None as ``line_count`` says; numpy's passes over the bytes,
    not Python's ``bytes.count`` (several times faster)."""
    piece = buffer[:size]
    if (piece == QUOTE).any():
        return None
    line_ends = buffer == LF
    if (line_ends[:size] & line_ends[1 : size + 1]).any():  # an empty line
        return None
    returns = buffer == CR
    if returns.any():
        if (returns[:size] & ~line_ends[1 : size + 1]).any():  # a lone \r
            return None
        if (line_ends[:size] & returns[1 : size + 1] & line_ends[2 : size + 2]).any():
            return None  # an empty line ending in \r\n
    return int(np.count_nonzero(line_ends[:size]))


def column_types(
    columns: list[int], kind: pa.DataType, labels: list[int]
) -> dict[str, pa.DataType]:
    """pyarrow's types by column name (a column's position): ``columns``, then ``labels``."""
    return {str(i): kind for i in columns} | {str(i): pa.string() for i in labels}


def arrow_file(stream: BinaryIO) -> pa.NativeFile:
    """``stream`` as pyarrow reads it without the GIL: a ``BytesIO``'s bytes in place (its
    ``getvalue`` is the very bytes it was made from; ``getbuffer`` would copy them), else the
    file under its descriptor (a spooled upload is rolled over to disk if it was not), opened
    again, so that the parse holds a block of it at a time.

    The file's reads are buffers of ``MEMORY_POOL`` too, not of pyarrow's default pool
    (mimalloc), which keeps the pages of the first large parse in a process (the two halves'
    reads at once) for the next: 30 MB more at that parse's peak (docs/benchmarks.md, issue 29,
    eighth session)."""
    if isinstance(stream, io.BytesIO):
        return pa.BufferReader(stream.getvalue())
    descriptor = stream.fileno()
    stream.flush()
    return pa.OSFile(f"/dev/fd/{descriptor}", memory_pool=MEMORY_POOL)


def arrow_reader(
    csv_file: CsvFile, source: pa.NativeFile, types: dict[str, pa.DataType]
) -> pa.RecordBatchReader:
    """pyarrow's streaming reader of the data rows in ``source`` (at the first), the columns of
    ``types`` in their order; no cell is null (an empty cell is not a number)."""
    names = [str(index) for index in range(csv_file.header.width)]
    convert = pa_csv.ConvertOptions(
        column_types=types,
        include_columns=list(types),
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return pa_csv.open_csv(
        source,
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
    csv_file.stream.seek(0)
    rows = numbered_rows(TextLines(csv_file.stream, errors="replace"))
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


def text_labels(
    values: pa.ChunkedArray | pa.Array, label: str, field: str, limits: DataLimits
) -> np.ndarray:
    """A text column (plain or dictionary-encoded) as a fixed-width string array, its labels
    within ``limits``; made from its few distinct labels, not from a Python string per row,
    and sized from them before it is made."""
    encoded = dictionary_of(values)
    used = encoded.dictionary.take(pc.unique(encoded.indices))
    longest = pc.max(pc.utf8_length(used)).as_py() or 0
    limits.check_labels(field, len(encoded), longest, f"column {label} ")
    distinct = np.array(encoded.dictionary.to_pylist(), dtype=f"<U{max(longest, 1)}")
    return distinct[encoded.indices.to_numpy()]


def dictionary_of(values: pa.ChunkedArray | pa.Array) -> pa.DictionaryArray:
    """Text ``values`` as one dictionary array: the distinct labels, and each row's index."""
    if isinstance(values, pa.ChunkedArray):
        values = values.unify_dictionaries() if pa.types.is_dictionary(values.type) else values
        values = values.combine_chunks()
    return values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)


# --- Parquet ----------------------------------------------------------------------------------


def open_parquet(stream: BinaryIO) -> tuple[pq.ParquetFile, Header]:
    """The Parquet file in ``stream`` and its columns; nothing but the footer is read yet.

    pyarrow builds ``schema_arrow`` anew on every access: it is read once, and every column
    name is looked up in a set or counted by a ``Counter``, so that thousands of columns take
    no longer than their footer takes to parse."""
    try:
        parquet = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DataError("file", f"is not a Parquet file: {error}") from None
    schema = parquet.schema_arrow
    index = pandas_index(schema)
    names = [name for name in schema.names if name not in index]
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise DataError("file", f"has more than one column named {repeated[0]!r}")
    return parquet, Header(names, len(names))


def pandas_index(schema: pa.Schema) -> set[str]:
    """The columns that hold a pandas DataFrame's index (``to_parquet`` writes one unless it is
    a plain range): row labels, not features. Metadata not as pandas writes it names none."""
    try:
        metadata = schema.pandas_metadata
    except ValueError:  # not JSON
        return set()
    index = metadata.get("index_columns") if isinstance(metadata, dict) else None
    return {name for name in index if isinstance(name, str)} if isinstance(index, list) else set()


# Cells read from a Parquet file at once (8 MB as float64): columns are read together up to
# this many, since each read also costs a pass over all of the file's columns.
PARQUET_READ_CELLS = 1024 * 1024


def read_parquet_numbers(
    parquet: pq.ParquetFile, header: Header, numbers: list[int]
) -> NumberColumns:
    """The columns ``numbers`` (of numeric types) as float64, a few columns at a time (the
    format is made for it; ``PARQUET_READ_CELLS``) into one array: no whole table in memory.
    The labels are ``parquet_labels``'s."""
    n_rows = parquet.metadata.num_rows
    if n_rows == 0:
        raise DataError("file", "has no data rows")
    values = np.empty((n_rows, len(numbers)))
    not_numbers = {}
    per_read = max(1, PARQUET_READ_CELLS // n_rows)
    for start in range(0, len(numbers), per_read):
        names = [header.names[column] for column in numbers[start : start + per_read]]
        for position, cells in enumerate(read_parquet_columns(parquet, names), start):
            if cells.null_count:
                not_numbers[position] = pc.index(pc.is_null(cells), True).as_py()
                continue
            # An integer beyond 2**53 is rounded to the nearest float64, as a CSV cell is.
            fill_column(values[:, position], pc.cast(cells, pa.float64(), safe=False))
    return NumberColumns(values, not_numbers, None)


def read_parquet_columns(parquet: pq.ParquetFile, names: list[str]) -> list[pa.ChunkedArray]:
    """Columns ``names`` whole: for numbers, 8 bytes a cell at most once the rows are
    checked."""
    try:
        columns = parquet.read(columns=names).columns
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DataError("file", f"is not a valid Parquet file: {error}") from None
    for name, cells in zip(names, columns, strict=True):
        if len(cells) != parquet.metadata.num_rows:
            message = f"column {name!r} has {len(cells)} rows, not as many as the file"
            raise DataError("file", message)
    return columns


def read_parquet_column(parquet: pq.ParquetFile, name: str) -> pa.ChunkedArray:
    return read_parquet_columns(parquet, [name])[0]


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


def parquet_column_task(parquet: pq.ParquetFile, name: str) -> Task:
    """The task a Parquet target column suggests, from its type in the footer: classes for text
    and booleans, regression for a type that is not numbers (which the read proper refuses
    naming it), and for numbers as their values say (``inferred_task``; nulls left out,
    refused by the read proper), the only case that reads the column."""
    kind = value_type(parquet.schema_arrow.field(name).type)
    if is_text(kind) or pa.types.is_boolean(kind):
        return Task.CLASSIFICATION
    if not any(is_kind(kind) for is_kind in NUMBER_TYPES):
        return Task.REGRESSION
    cells = plain_values(read_parquet_column(parquet, name))
    return inferred_task(pc.cast(pc.drop_null(cells), pa.float64(), safe=False).to_numpy())


def value_type(kind: pa.DataType) -> pa.DataType:
    """The type of a column's values: a dictionary-encoded column's (pandas' categories)."""
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def plain_values(cells: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary-encoded column (pandas' categories) as its values."""
    return cells.cast(cells.type.value_type) if pa.types.is_dictionary(cells.type) else cells


def is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


@dataclass(frozen=True)
class LabelColumn:
    """A Parquet file's target column of class labels: the file (from ``stream``, which it was
    opened on), the column's ``name``, and its ``label`` in messages."""

    stream: BinaryIO
    parquet: pq.ParquetFile
    name: str
    label: str


def parquet_labels(column: LabelColumn, limits: DataLimits) -> np.ndarray:
    """Class labels from a Parquet column of integers, whole floats, text or booleans (the
    labels "false" and "true"); its type is checked in the footer before anything is read."""
    kind = value_type(column.parquet.schema_arrow.field(column.name).type)
    for is_kind, read_labels in LABEL_READERS:
        if is_kind(kind):
            return read_labels(column, limits)
    message = f"column {column.label} holds {kind}; labels are integers, text or booleans"
    raise DataError("target", message)


def number_labels(column: LabelColumn, limits: DataLimits) -> np.ndarray:
    """Integer or float labels, read whole: 8 bytes a row."""
    cells = read_parquet_column(column.parquet, column.name)
    refuse_nulls(cells, column.label)
    return plain_values(cells).to_numpy()


def boolean_labels(column: LabelColumn, limits: DataLimits) -> np.ndarray:
    """Booleans as the labels "false" and "true", read whole: a bit a row."""
    cells = read_parquet_column(column.parquet, column.name)
    refuse_nulls(cells, column.label)
    return text_labels(plain_values(cells).cast(pa.string()), column.label, "target", limits)


# Beyond a label's UTF-8 bytes (at most LABEL_CHAR_BYTES a character), what a row may take in a
# column chunk unpacked: its length, its dictionary index, its levels, its share of the page
# headers and their statistics; and what a column chunk takes whatever its rows.
LABEL_ROW_OVERHEAD_BYTES = 64
LABEL_CHUNK_OVERHEAD_BYTES = 64 * 1024
# Rows of a label column read at a time, each batch's labels checked before the next is read.
LABEL_BATCH_ROWS = 64 * 1024


def text_column_labels(column: LabelColumn, limits: DataLimits) -> np.ndarray:
    """Text labels, read in batches as dictionaries (a label repeated on every row is held
    once), each batch's longest label checked before the next is read; the column's size
    unpacked is checked in the footer first."""
    check_label_column_size(column, limits)
    batches, rows = [], 0
    for cells in label_batches(column):
        refuse_nulls(cells, column.label, rows)
        used = cells.dictionary.take(pc.unique(cells.indices))
        longest = pc.max(pc.utf8_length(used)).as_py() or 0
        limits.check_labels("target", rows + len(cells), longest, f"column {column.label} ")
        batches.append(cells)
        rows += len(cells)
    if rows != column.parquet.metadata.num_rows:
        message = f"column {column.name!r} has {rows} rows, not as many as the file"
        raise DataError("file", message)
    return text_labels(pa.chunked_array(batches), column.label, "target", limits)


def label_batches(column: LabelColumn) -> Iterator[pa.DictionaryArray]:
    """The column's rows, ``LABEL_BATCH_ROWS`` at a time, each batch a dictionary array."""
    labelled = pq.ParquetFile(
        column.stream, metadata=column.parquet.metadata, read_dictionary=[column.name]
    )
    batches = labelled.iter_batches(batch_size=LABEL_BATCH_ROWS, columns=[column.name])
    try:
        for batch in batches:
            yield dictionary_of(batch.column(0))
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DataError("file", f"is not a valid Parquet file: {error}") from None


def check_label_column_size(column: LabelColumn, limits: DataLimits) -> None:
    """Refuse, from the footer, a column too large unpacked for labels within ``limits``: a
    few hundred bytes of a compressed file can unpack into gigabytes of one label."""
    metadata = column.parquet.metadata
    paths = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    index = paths.index(column.name)
    size = sum(
        metadata.row_group(group).column(index).total_uncompressed_size
        for group in range(metadata.num_row_groups)
    )
    per_row = LABEL_CHAR_BYTES * limits.max_label_chars + LABEL_ROW_OVERHEAD_BYTES
    bound = metadata.num_rows * per_row + metadata.num_row_groups * LABEL_CHUNK_OVERHEAD_BYTES
    if size > bound:
        message = f"column {column.label} unpacks into {size} bytes for {metadata.num_rows} rows"
        limit = f"labels of at most {limits.max_label_chars} characters (MAX_LABEL_CHARS) take"
        raise DataError("target", f"{message}; {limit} at most {bound}")


def refuse_nulls(cells: pa.Array | pa.ChunkedArray, label: str, first_row: int = 0) -> None:
    if cells.null_count:
        row = first_row + pc.index(pc.is_null(cells), True).as_py()
        raise DataError("target", f"row {row}, column {label}: null is not a class label")


def is_number_label(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


LABEL_READERS = (
    (is_text, text_column_labels),
    (pa.types.is_boolean, boolean_labels),
    (is_number_label, number_labels),
)
