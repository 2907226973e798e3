"""A CSV file's data rows parsed in two halves at once (service/datasets/tables.py): the same
numbers and labels as the serial parse, cut only where the first half's rows can be counted,
and every refusal worded as the serial parse words it (the long files of
test_upload_errors.py, here cut in two)."""

import io

import numpy as np
import pyarrow as pa
import pytest

from service.datasets import tables
from tests.service.datasets.test_upload_errors import ROWS, long_csv, post_csv, refused
from tests.service.datasets.test_uploads import post_file


@pytest.fixture
def halves_from_any_size(monkeypatch):
    """Files of any size cut in two (600 kB ones too, not only those of megabytes)."""
    monkeypatch.setattr(tables, "HALVES_MIN_BYTES", 0)


def csv_of(text: str) -> tables.CsvFile:
    return tables.open_csv(io.BytesIO(text.encode()), header=True)


def test_both_halves_read_the_numbers_and_labels_the_serial_parse_reads(halves_from_any_size):
    csv_file = csv_of(long_csv())
    halves = tables.read_in_halves(csv_file, [0, 1], [2], None)
    serial = tables.stream_numbers(csv_file, [0, 1], [2], None, as_text=False)
    assert halves is not None and len(halves.values) == ROWS
    np.testing.assert_array_equal(halves.values, serial.values)
    assert halves.labels.equals(serial.labels)
    assert halves.not_numbers == {}


def test_windows_line_ends_are_counted_and_cut(halves_from_any_size):
    csv_file = csv_of(long_csv().replace("\n", "\r\n"))
    halves = tables.read_in_halves(csv_file, [0, 1], [2], None)
    assert halves is not None and len(halves.values) == ROWS
    assert halves.values[-1, 0] == ROWS - 1 + 0.5


def test_quotes_in_the_second_half_only_do_not_stop_the_cut(halves_from_any_size):
    lines = long_csv().splitlines(keepends=True)
    quoted = [line.replace(",no\n", ',"no"\n') for line in lines[20_000:]]
    halves = tables.read_in_halves(csv_of("".join(lines[:20_000] + quoted)), [0, 1], [2], None)
    assert halves is not None and set(halves.labels.to_pylist()) == {"yes", "no"}


@pytest.mark.parametrize(
    ("first_half", "why"),
    [
        ('1.5,2,"a\nb"\n', "a quoted value may hold a line break"),
        ("1.5,2,yes\n\n", "pyarrow skips an empty line"),
        ("1.5,2,yes\r\n\r\n", "pyarrow skips an empty line"),
        ("1.5,2,yes\r", "a lone carriage return ends a line"),
        ("\n", "the data starts with an empty line"),
    ],
)
def test_a_first_half_whose_rows_cannot_be_counted_is_not_cut(
    halves_from_any_size, first_half, why
):
    text = "a,b,label\n" + first_half + long_csv().removeprefix("a,b,label\n")
    source = tables.arrow_file(io.BytesIO(text.encode()))
    start = len("a,b,label\n")
    assert tables.line_count(source, start, start + len(first_half) + 100) is None, why


def test_a_short_file_is_not_cut():
    csv_file = csv_of(long_csv())
    assert csv_file.data_bytes() < tables.HALVES_MIN_BYTES
    assert tables.read_in_halves(csv_file, [0, 1], [2], None) is None


@pytest.mark.parametrize("bad_line", [5_001, 25_001], ids=["first half", "second half"])
@pytest.mark.parametrize(
    ("cell", "problem"),
    [("x", "is not a number"), ("nan", "is not a finite number")],
)
def test_a_bad_cell_in_either_half_is_named_as_the_serial_parse_names_it(
    halves_from_any_size, client_with, bad_line, cell, problem
):
    response = post_csv(client_with, long_csv(bad_line=bad_line, cell=cell))
    assert refused(response, "file") == f"line {bad_line}, column 'b': {cell!r} {problem}"


def test_a_short_line_in_the_second_half_is_named(halves_from_any_size, client_with):
    text = long_csv().replace("\n20000.5,", "\n20000.5\n", 1)
    assert refused(post_csv(client_with, text), "file") == "line 20002 has 1 values; expected 3"


def test_rows_over_the_limit_are_refused_as_the_serial_parse_refuses_them(
    halves_from_any_size, client_with, monkeypatch
):
    client = client_with(
        max_request_bytes=10_000_000, max_dataset_rows=20_000, max_dataset_cells=1_000_000
    )
    halves = []
    monkeypatch.setattr(tables, "read_in_halves", recorded(tables.read_in_halves, halves))
    message = refused(post_file(client, long_csv().encode(), "long.csv", target="label"), "file")
    assert message.endswith("rows; the limit is 20000 (MAX_DATASET_ROWS)")
    assert halves == [None]  # tried in halves, then read serially for the message


def recorded(function, results: list):
    def call(*args, **kwargs):
        results.append(function(*args, **kwargs))
        return results[-1]

    return call


def test_a_long_csv_file_read_in_halves_is_stored_whole(halves_from_any_size, client_with):
    dataset = post_csv(client_with, long_csv()).get_json()
    assert (dataset["rows"], dataset["features"], dataset["classes"]) == (ROWS, 2, ["no", "yes"])


@pytest.mark.parametrize("piece_bytes", [1, 2, 3, 5, 7])
def test_line_breaks_across_pieces_are_counted_once(monkeypatch, piece_bytes):
    monkeypatch.setattr(tables, "SCAN_PIECE_BYTES", piece_bytes)
    for line_end in ("\n", "\r\n"):
        text = line_end.join(["1,22,x", "333,4,yy", "5,6,z"]) + line_end + "7,8,w"
        source = tables.arrow_file(io.BytesIO(text.encode()))
        assert tables.line_count(source, 0, text.rindex("\n") + 1) == 3
        empty = text.replace(line_end, line_end * 2, 1)
        source = tables.arrow_file(io.BytesIO(empty.encode()))
        assert tables.line_count(source, 0, empty.rindex("\n") + 1) is None


def test_a_batch_s_number_columns_become_its_rows():
    batch = pa.record_batch({"a": [1.0, 2.0], "b": [3.0, 4.0], "label": ["x", "y"]})
    np.testing.assert_array_equal(tables.number_rows(batch, 2), [[1.0, 3.0], [2.0, 4.0]])
    assert tables.number_rows(batch, 0).shape == (2, 0)


def test_the_numbers_are_read_in_the_order_asked_not_the_file_s():
    csv_file = csv_of("a,label,c\n1,x,3\n4,y,6\n")
    read = tables.stream_numbers(csv_file, [2, 0], [1], None, as_text=False)
    np.testing.assert_array_equal(read.values, [[3.0, 1.0], [6.0, 4.0]])
    assert read.labels.to_pylist() == ["x", "y"]


def test_a_file_s_reads_are_buffers_of_the_service_s_pool(tmp_path):
    """Not of pyarrow's default pool, which keeps their pages for its next use."""
    path = tmp_path / "data.csv"
    path.write_bytes(b"1,2\n" * (1 << 18))
    with path.open("rb") as stream, tables.arrow_file(stream) as source:
        before = tables.MEMORY_POOL.bytes_allocated()
        piece = source.read_buffer(1 << 20)
        assert tables.MEMORY_POOL.bytes_allocated() - before >= piece.size == 1 << 20
