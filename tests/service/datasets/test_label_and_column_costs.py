"""Issue 21, rows 1, 3, 4, 15 and 16: what a data set's labels and columns may cost (and a
long string among JSON features or instances, refused before numpy pads every cell to it).

Labels are stored as wide as the longest (numpy's fixed-width text, 4 bytes a character), so
one long label costs its width on every row: each path bounds the longest label
(MAX_LABEL_CHARS) and all of them in bytes (MAX_DATASET_CELLS x 8) before the array is made.
Column names are matched in a dict, so that 20,000 columns cost no more than their bytes.
Memory is measured as the peak RSS of a subprocess, never as a time.
"""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.datasets.ingest import ColumnChoice, DataLimits, Header, column_indices
from service.datasets.uploads import Upload, dataset_from_file
from service.serving.csv_predictions import csv_features
from service.vocabulary import DataError, Task
from tests.factories import assert_envelope, peak_rss_growth
from tests.service.datasets.test_uploads import post_file
from tests.service.serving.test_models_evaluate import iris  # noqa: F401 (a fixture)

LONG_LABEL = "x" * 50_000
LIMITS = DataLimits(max_rows=1_000_000, max_cells=64_000_000, max_label_chars=256)

# What the measured call may add to the peak RSS: the refused inputs below took from 400 MB
# (2,000 JSON labels padded to 50,000 characters) to 800 MB (a Parquet label repeated).
RSS_BOUND_MB = 60


def refused(response, field: str) -> str:
    return assert_envelope(response, 422, field)["details"][field][0]


# --- Row 1: JSON labels ---------------------------------------------------------------------


def test_a_long_json_label_is_422_naming_its_row(client, row_counts):
    body = {
        "task": "classification",
        "features": [[float(row)] for row in range(4)],
        "targets": ["a", LONG_LABEL, "b", "a"],
    }
    message = refused(client.post("/v1/datasets", json=body), "targets[1]")
    assert message == "has a label of 50000 characters; the limit is 256 (MAX_LABEL_CHARS)"
    assert row_counts()["datasets"] == 0


def test_a_long_json_regression_target_is_not_a_number(client):
    body = {"task": "regression", "features": [[1.0], [2.0]], "targets": [1.0, LONG_LABEL]}
    assert "is not a number" in refused(client.post("/v1/datasets", json=body), "targets[1]")


def test_json_labels_up_to_the_limit_are_a_data_set(client):
    labels = ["a" * 256, "b", "a" * 256, "b"]
    body = {"task": "classification", "features": [[0.0], [1.0], [2.0], [3.0]], "targets": labels}
    response = client.post("/v1/datasets", json=body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["classes"] == ["a" * 256, "b"]


def test_json_labels_over_the_data_sets_bytes_are_422(client_with):
    # 1,000 labels of 100 characters take 400,000 bytes: over 5,000 cells x 8 bytes.
    labels = [("a" if row % 2 else "b") * 100 for row in range(1000)]
    body = {"task": "classification", "features": [[0.0]] * 1000, "targets": labels}
    message = refused(client_with(max_dataset_rows=1000).post("/v1/datasets", json=body), "targets")
    assert "MAX_DATASET_CELLS x 8" in message


def test_a_long_evaluate_target_is_422_naming_its_row(client, iris):  # noqa: F811
    body = {"instances": [[5.1, 3.5, 1.4, 0.2]] * 3, "targets": ["setosa", LONG_LABEL, "setosa"]}
    response = client.post(f"/v1/models/{iris['model_id']}/evaluate", json=body)
    assert "the limit is 256" in refused(response, "targets[1]")


def test_evaluate_targets_of_the_wrong_length_are_422_before_they_are_read(client, iris):  # noqa: F811
    body = {"instances": [[5.1, 3.5, 1.4, 0.2]], "targets": ["setosa"] * 10_000}
    response = client.post(f"/v1/models/{iris['model_id']}/evaluate", json=body)
    assert refused(response, "targets") == "has 10000 entries; instances has 1 rows"


def test_a_long_json_label_among_many_rows_takes_no_memory():
    setup = """
from service.datasets.ingest import DataLimits, dataset_from_json
from service.vocabulary import DataError, Task
features = [[float(row)] for row in range(2000)]
targets = ["a", "b"] * 999 + ["x" * 50_000, "a"]
limits = DataLimits(1_000_000, 64_000_000, 256)
"""
    call = "dataset_from_json('d', Task.CLASSIFICATION, features, targets, limits)"
    measured = peak_rss_growth(setup, call)
    assert measured["outcome"] == "targets[1998]"
    assert measured["growth_mb"] < RSS_BOUND_MB, measured


# --- JSON features and instances: a long string among numbers -------------------------------


def test_a_long_string_among_json_features_is_422_naming_its_cell(client, row_counts):
    body = {"task": "regression", "features": [[1.0], [LONG_LABEL], [2.0]], "targets": [1, 2, 3]}
    message = refused(client.post("/v1/datasets", json=body), "features[1][0]")
    assert message == f"'{LONG_LABEL[:39]}... is not a number"  # the cell shown cut short
    assert row_counts()["datasets"] == 0


def test_a_long_string_among_instances_is_422_naming_its_cell(client, iris):  # noqa: F811
    body = {"instances": [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, LONG_LABEL, 0.2]]}
    response = client.post(f"/v1/models/{iris['model_id']}/predict", json=body)
    assert "is not a number" in refused(response, "instances[1][2]")


def test_a_list_among_json_features_is_422(client):
    body = {"task": "regression", "features": [[1.0, 2.0], [3.0, [4.0]]], "targets": [1, 2]}
    message = refused(client.post("/v1/datasets", json=body), "features")
    assert message == "each row must be a flat list of numbers"


def test_a_long_string_among_many_instances_takes_no_memory():
    # numpy would pad 2,000 x 2 cells to 50,000 characters: 800 MB.
    setup = """
from service.datasets.ingest import numeric_matrix
from service.vocabulary import DataError
instances = [[float(row), 1.0] for row in range(2000)]
instances[1998][1] = "x" * 50_000
"""
    measured = peak_rss_growth(setup, "numeric_matrix(instances, 'instances')")
    assert measured["outcome"] == "instances[1998][1]"
    assert measured["growth_mb"] < RSS_BOUND_MB, measured


# --- Row 15: npz labels by their bytes ------------------------------------------------------


def wide_label_npz(rows: int) -> bytes:
    labels = np.array([("a" if row % 2 else "b") * 256 for row in range(rows)])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, X=np.zeros((rows, 1)), y=labels)
    return buffer.getvalue()


def test_npz_labels_are_bounded_by_their_bytes(client):
    # 20 rows of 256-character labels: 20 cells, within 5,000, but 20,480 bytes of 40,000...
    assert post_file(client, wide_label_npz(20), "w.npz").status_code == 201
    # ...and 100 rows 102,400 bytes: over MAX_DATASET_CELLS x 8, from the array's header.
    message = refused(post_file(client, wide_label_npz(100), "w.npz"), "target")
    assert message == (
        "array 'y' holds 100 labels of 256 characters: 102400 bytes (each as wide as the "
        "longest); the limit is 40000 (MAX_DATASET_CELLS x 8)"
    )


def test_a_small_npz_of_wide_labels_is_refused_before_it_is_unpacked(tmp_path):
    path = tmp_path / "wide.npz"
    path.write_bytes(wide_label_npz(200_000))  # about 200 kB; 205 MB unpacked
    setup = f"""
from service.datasets.ingest import ColumnChoice, DataLimits
from service.datasets.uploads import Upload, dataset_from_file
from service.vocabulary import DataError, Task
stream = open({str(path)!r}, "rb")
upload = Upload("w", Task.CLASSIFICATION, stream, ColumnChoice(()))
limits = DataLimits(1_000_000, 1_000_000, 256)
"""
    measured = peak_rss_growth(setup, "dataset_from_file('npz', upload, limits)")
    assert measured["outcome"] == "target"
    assert measured["growth_mb"] < RSS_BOUND_MB, measured


# --- Row 3: a Parquet label column ----------------------------------------------------------


def repeated_label_parquet(label: str, rows: int) -> bytes:
    """A tiny file: one dictionary-encoded label on every row, compressed with zstd."""
    labels = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), [label])
    table = pa.table({"x": np.zeros(rows), "species": labels})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def test_a_huge_parquet_label_is_refused_from_the_footer(client, row_counts):
    data = repeated_label_parquet("y" * 1_000_000, 800)
    message = refused(post_file(client, data, "huge.parquet", target="species"), "target")
    assert message.startswith("column 'species' unpacks into ")
    assert "(MAX_LABEL_CHARS)" in message
    assert row_counts()["datasets"] == 0


def test_a_long_parquet_label_within_the_footers_bound_is_named(client):
    # 800 rows may unpack into 800 x 1,088 bytes: a label of 300 characters fits that...
    labels = ["a" * 300] + ["b"] * 799
    data = repeated_label_parquet("b", 800)
    table = pa.table({"x": np.zeros(800), "species": labels})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    message = refused(post_file(client, buffer.getvalue(), "l.parquet", target="species"), "target")
    # ...and is refused by its length, as it is read.
    assert message == (
        "column 'species' has a label of 300 characters; the limit is 256 (MAX_LABEL_CHARS)"
    )
    assert post_file(client, data, "b.parquet", target="species").status_code == 422  # 1 class


def test_parquet_text_labels_read_in_batches_are_the_labels(client_with, sessions):
    labels = [f"class {row % 3}" for row in range(3000)]
    table = pa.table({"x": np.arange(3000.0), "species": labels})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=1000)
    client = client_with(max_dataset_rows=10_000, max_dataset_cells=100_000)
    response = post_file(client, buffer.getvalue(), "l.parquet", target="species")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["classes"] == ["class 0", "class 1", "class 2"]


def test_a_huge_parquet_label_is_refused_within_bounded_memory(tmp_path):
    path = tmp_path / "huge.parquet"
    path.write_bytes(repeated_label_parquet("y" * 1_000_000, 800))
    setup = f"""
from service.datasets.ingest import ColumnChoice, DataLimits
from service.datasets.uploads import Upload, dataset_from_file
from service.vocabulary import DataError
stream = open({str(path)!r}, "rb")
upload = Upload("h", None, stream, ColumnChoice(["species"]))
limits = DataLimits(1_000_000, 64_000_000, 256)
"""
    measured = peak_rss_growth(setup, "dataset_from_file('parquet', upload, limits)")
    assert measured["outcome"] == "target"
    assert measured["growth_mb"] < RSS_BOUND_MB, measured


# --- Rows 4 and 16: thousands of columns ----------------------------------------------------

WIDE = 20_000
WIDE_NAMES = [f"c{column}" for column in range(WIDE)]


def wide_parquet(pandas_index: bool) -> bytes:
    columns = {name: np.zeros(3) for name in WIDE_NAMES} | {"y": [0, 1, 0]}
    table = pa.table(columns)
    if pandas_index:  # metadata as pandas writes it, naming an index column
        index = {"index_columns": ["y"], "columns": [{"name": name} for name in columns]}
        table = table.replace_schema_metadata({b"pandas": json.dumps(index).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def test_a_parquet_file_of_20000_columns_is_a_data_set():
    upload = Upload("w", Task.CLASSIFICATION, io.BytesIO(wide_parquet(False)), ColumnChoice(["y"]))
    with dataset_from_file("parquet", upload, LIMITS) as packed:
        dataset = packed.row
    assert (dataset.n_features, dataset.feature_names[-1]) == (WIDE, f"c{WIDE - 1}")


def test_20000_parquet_columns_with_pandas_metadata_leave_its_index_out():
    upload = Upload("w", Task.REGRESSION, io.BytesIO(wide_parquet(True)), ColumnChoice(["c0"]))
    with dataset_from_file("parquet", upload, LIMITS) as packed:
        dataset = packed.row
    assert dataset.n_features == WIDE - 1 and "y" not in dataset.feature_names


def test_20000_explicit_features_are_matched_in_their_order():
    header = Header([*WIDE_NAMES, "y"], WIDE + 1)
    chosen = list(reversed(WIDE_NAMES))
    assert column_indices(header, chosen, "features") == list(range(WIDE - 1, -1, -1))
    with pytest.raises(DataError, match="lists column 'c7' twice"):
        column_indices(header, [*chosen, "c7"], "features")


def test_a_csv_upload_of_20000_chosen_features_is_a_data_set():
    text = ",".join([*WIDE_NAMES, "y"]) + "\n" + ",".join(["1"] * WIDE + ["0"]) + "\n"
    text += ",".join(["2"] * WIDE + ["1"]) + "\n"
    choice = ColumnChoice(["y"], features=list(reversed(WIDE_NAMES)))
    upload = Upload("w", Task.CLASSIFICATION, io.BytesIO(text.encode()), choice)
    with dataset_from_file("csv", upload, LIMITS) as packed:
        dataset = packed.row
    assert dataset.n_features == WIDE and dataset.feature_names[0] == f"c{WIDE - 1}"


def test_a_csv_prediction_body_of_20000_columns_is_matched_by_name():
    values = np.arange(WIDE, dtype=float)
    body = ",".join(WIDE_NAMES) + "\n" + ",".join(str(v) for v in values) + "\n"
    x = csv_features(body.encode(), list(reversed(WIDE_NAMES)))
    np.testing.assert_array_equal(x, values[::-1].reshape(1, -1))


def test_a_repeated_csv_header_name_is_the_first_column():
    header = Header(["a", "b", "a"], 3)
    assert column_indices(header, ["a", "b"], "features") == [0, 1]


@pytest.mark.parametrize(
    ("targets", "path"),
    [
        (["a", "b" * 300], "targets[1]"),
        ([["a"], ["b", "c" * 300]], "targets[1][1]"),
        ([["a"], [["b", ["c" * 300]]]], "targets[1][0][1][0]"),
    ],
)
def test_a_long_label_is_named_however_deep(client, targets, path):
    body = {"task": "classification", "features": [[0.0], [1.0]], "targets": targets}
    assert "the limit is 256" in refused(client.post("/v1/datasets", json=body), path)
