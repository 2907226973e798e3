"""Files that are not data sets: each a 422 naming its field (or a 413 over MAX_REQUEST_BYTES),
never a 500, nothing stored, never a pickle loaded; CSV errors name their line and column
wherever pyarrow's blocks split the file."""

import io
import zipfile

import numpy as np
import pyarrow as pa
import pytest

from service.datasets.uploads import format_of
from tests.factories import assert_envelope
from tests.service.conftest import MAX_REQUEST_BYTES
from tests.service.datasets.test_uploads import IRIS_PARQUET, npz_bytes, parquet_bytes, post_file

UNPICKLED = []


class Trap:
    """Unpickling one appends to UNPICKLED: an upload that loads it has run a pickle."""

    def __reduce__(self):
        return UNPICKLED.append, ("unpickled",)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("iris.parquet", "parquet"),
        ("IRIS.PQ", "parquet"),
        ("digits.npz", "npz"),
        ("iris.csv", "csv"),
        ("data.txt", "csv"),
        ("no-extension", "csv"),
        (None, "csv"),
    ],
)
def test_the_format_comes_from_the_file_name(filename, expected):
    assert format_of(filename) == expected


def refused(response, field: str, status: int = 422) -> str:
    """The first message on ``field`` of a refusal."""
    return assert_envelope(response, status, field)["details"][field][0]


def test_an_unknown_format_is_422(client, row_counts):
    assert refused(post_file(client, b"a,b\n1,2\n", "a.csv", format="xlsx"), "format")
    assert row_counts()["datasets"] == 0


LONG_PARQUET = parquet_bytes(x=np.arange(900.0), species=["a", "b", "c"] * 300)
BAD_PARQUET = {
    "not parquet at all": (b"a,species\n1,x\n", {}, "file", "is not a Parquet file"),
    "cut short": (IRIS_PARQUET[: len(IRIS_PARQUET) // 2], {}, "file", "Parquet"),
    "a corrupt page": (
        LONG_PARQUET[:4] + bytes(40) + LONG_PARQUET[44:],
        {},
        "file",
        "is not a valid Parquet file",
    ),
    "a text feature": (
        parquet_bytes(name=["a", "b"], x=[1.0, 2.0], species=["s", "v"]),
        {},
        "file",
        "column 'name' holds string, not numbers",
    ),
    "a null feature": (
        parquet_bytes(x=[1.0, None, 3.0], species=["s", "v", "s"]),
        {},
        "file",
        "row 1, column 'x': null is not a number",
    ),
    "NaN in a feature": (
        parquet_bytes(x=[1.0, 2.0, float("nan")], species=["s", "v", "s"]),
        {},
        "file",
        "row 2, column 'x': nan is not a finite number",
    ),
    "infinity in a regression target": (
        parquet_bytes(x=[1.0, 2.0], y=[float("inf"), 1.0]),
        {"task": "regression", "target": "y"},
        "target",
        "row 0, column 'y': inf is not a finite number",
    ),
    "a null label": (
        parquet_bytes(x=[1.0, 2.0], species=["s", None]),
        {},
        "target",
        "row 1, column 'species': null is not a class label",
    ),
    "no such target column": (IRIS_PARQUET, {"target": "label"}, "target", "no column 'label'"),
    "no target at all": (IRIS_PARQUET, {"target": None}, "target", "required"),
    "two label columns": (
        IRIS_PARQUET,
        {"target": "species,sepal_width"},
        "target",
        "exactly one target column",
    ),
    "too many rows": (
        parquet_bytes(x=np.arange(1001.0), species=["a", "b"] * 500 + ["a"]),
        {},
        "file",
        "MAX_DATASET_ROWS",
    ),
    "no rows": (
        parquet_bytes(x=pa.array([], pa.float64()), species=pa.array([], pa.string())),
        {},
        "file",
        "has no data rows",
    ),
}


@pytest.mark.parametrize("case", BAD_PARQUET, ids=list(BAD_PARQUET))
def test_a_bad_parquet_file_is_422_naming_the_field(client, row_counts, case):
    data, form, field, says = BAD_PARQUET[case]
    fields = {key: value for key, value in {"target": "species", **form}.items() if value}
    assert says in refused(post_file(client, data, "data.parquet", **fields), field)
    assert row_counts()["datasets"] == 0


def compressed_npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


GOOD_X, GOOD_Y = np.ones((4, 2)), np.array([0, 1, 0, 1])
BAD_NPZ = {
    "not a zip": (b"X,y\n1,0\n", {}, "file", "is not an .npz file"),
    "a lone .npy": (npy_bytes(GOOD_X), {}, "file", "is not an .npz file"),
    "cut short": (npz_bytes(X=GOOD_X, y=GOOD_Y)[:-40], {}, "file", "is not an .npz file"),
    "a member's bytes changed": (
        npz_bytes(X=np.ones((100, 2)), y=np.zeros(100)).replace(b"\xf0\x3f", b"\xf0\x40", 1),
        {},
        "file",
        "array 'X' cannot be read: Bad CRC-32",
    ),
    "no X": (npz_bytes(x=GOOD_X, y=GOOD_Y), {}, "features", "no array 'X'; its arrays are: x, y"),
    "no array named by target": (
        npz_bytes(X=GOOD_X, y=GOOD_Y),
        {"target": "labels"},
        "target",
        "no array 'labels'",
    ),
    "two names for one array": (
        npz_bytes(X=GOOD_X, y=GOOD_Y),
        {"features": "X,y"},
        "features",
        "one array",
    ),
    "drop": (npz_bytes(X=GOOD_X, y=GOOD_Y), {"drop": "X"}, "drop", "name the .npz arrays"),
    "3-D features": (
        npz_bytes(X=np.ones((4, 2, 2)), y=GOOD_Y),
        {},
        "features",
        "shape (rows, features)",
    ),
    "text features": (
        npz_bytes(X=np.array([["a", "b"]] * 4), y=GOOD_Y),
        {},
        "features",
        "shape (rows, features)",
    ),
    "rows that do not match": (
        npz_bytes(X=GOOD_X, y=np.array([0, 1])),
        {},
        "target",
        "one row per row",
    ),
    "NaN in X": (
        npz_bytes(X=np.array([[1.0, 2.0], [3.0, np.nan], [0, 0], [1, 1]]), y=GOOD_Y),
        {},
        "file",
        "array 'X', row 1, column 1: nan is not a finite number",
    ),
    "text regression targets": (
        npz_bytes(X=GOOD_X, y=np.array(["a", "b", "c", "d"])),
        {"task": "regression"},
        "target",
        "not numbers",
    ),
    "too many cells, compressed": (
        compressed_npz(X=np.zeros((1000, 6)), y=np.zeros(1000)),
        {},
        "file",
        "MAX_DATASET_CELLS",
    ),
    "no rows": (npz_bytes(X=np.ones((0, 2)), y=np.ones(0)), {}, "file", "has no data rows"),
    "no feature columns": (
        npz_bytes(X=np.ones((3, 0)), y=np.array([0, 1, 0])),
        {},
        "features",
        "array 'X' has no feature columns",
    ),
    "labels too long": (
        compressed_npz(X=GOOD_X, y=np.array(["a" * 300, "b", "a", "b"])),
        {},
        "target",
        "the limit is 256",
    ),
}


@pytest.mark.parametrize("case", BAD_NPZ, ids=list(BAD_NPZ))
def test_a_bad_npz_file_is_422_naming_the_field(client, row_counts, case):
    data, form, field, says = BAD_NPZ[case]
    assert says in refused(post_file(client, data, "data.npz", **form), field)
    assert row_counts()["datasets"] == 0


def test_an_npz_holding_objects_is_refused_without_unpickling(client, row_counts):
    objects = np.array([Trap(), Trap(), Trap(), Trap()], dtype=object)
    for arrays in ({"X": GOOD_X, "y": objects}, {"X": objects.reshape(2, 2), "y": GOOD_Y[:2]}):
        response = post_file(client, npz_bytes(**arrays), "pickled.npz")
        assert "pickle" in refused(response, "file")
    assert UNPICKLED == [] and row_counts()["datasets"] == 0


def test_a_file_over_max_request_bytes_is_413(client, row_counts):
    data = npz_bytes(X=np.zeros((MAX_REQUEST_BYTES // 16, 2)), y=np.zeros(MAX_REQUEST_BYTES // 16))
    assert (
        "MAX_REQUEST_BYTES" in assert_envelope(post_file(client, data, "big.npz"), 413)["message"]
    )
    assert row_counts()["datasets"] == 0


def test_a_zip_of_other_files_names_its_arrays(client):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    assert "its arrays are: notes.txt" in refused(
        post_file(client, buffer.getvalue(), "a.npz"), "features"
    )


# --- CSV past pyarrow's first block ------------------------------------------------------------

ROWS = 30_000  # about 600 kB: several of pyarrow's 256 kB blocks


def long_csv(bad_line: int | None = None, cell: str = "x") -> str:
    lines = ["a,b,label"] + [
        f"{row}.5,{row % 7},{'yes' if row % 2 else 'no'}" for row in range(ROWS)
    ]
    if bad_line is not None:
        a, _, label = lines[bad_line - 1].split(",")
        lines[bad_line - 1] = f"{a},{cell},{label}"
    return "\n".join(lines) + "\n"


def post_csv(client_with, text: str, **form):
    client = client_with(
        max_request_bytes=10_000_000, max_dataset_rows=100_000, max_dataset_cells=1_000_000
    )
    return post_file(client, text.encode(), "long.csv", target="label", **form)


def test_a_long_csv_file_is_read_whole(client_with):
    dataset = post_csv(client_with, long_csv()).get_json()
    assert (dataset["rows"], dataset["features"], dataset["classes"]) == (ROWS, 2, ["no", "yes"])


@pytest.mark.parametrize(
    ("cell", "problem"),
    [("x", "is not a number"), ("", "is not a number"), ("nan", "is not a finite number")],
)
def test_a_bad_cell_far_into_a_csv_file_is_named_by_its_line(client_with, cell, problem):
    response = post_csv(client_with, long_csv(bad_line=25_001, cell=cell))
    assert refused(response, "file") == f"line 25001, column 'b': {cell!r} {problem}"


def test_a_short_line_far_into_a_csv_file_is_named(client_with):
    text = long_csv().replace("\n20000.5,", "\n20000.5\n", 1)
    assert refused(post_csv(client_with, text), "file") == "line 20002 has 1 values; expected 3"


def test_numbers_python_reads_but_pyarrow_does_not_are_numbers(client_with):
    text = long_csv(bad_line=12_345, cell="1_000")
    assert post_csv(client_with, text).status_code == 201


def test_a_row_longer_than_a_block_is_read(client_with):
    text = "a,note,label\n" + "1," + "n" * 300_000 + ",yes\n" + "2,short,no\n"
    dataset = post_csv(client_with, text, drop="note").get_json()
    assert (dataset["rows"], dataset["feature_names"]) == (2, ["a"])


def test_more_rows_than_the_limit_in_one_block_are_refused(client_with):
    client = client_with(
        max_request_bytes=10_000_000, max_dataset_rows=20_000, max_dataset_cells=1_000_000
    )
    response = post_file(client, long_csv().encode(), "long.csv", target="label")
    assert refused(response, "file").endswith("rows; the limit is 20000 (MAX_DATASET_ROWS)")
