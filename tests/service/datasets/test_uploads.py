"""Parquet and .npz uploads through POST /v1/datasets, on SQLite and on PostgreSQL: the format
from the file name or the form, the stored arrays exactly the file's, and a job trains on them."""

import importlib
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from service.datasets import uploads
from service.db import blob_writes, records
from service.db.models import DatasetBlob
from tests.conftest import BACKENDS
from tests.factories import fail_blob_writes_after_one_piece, job_body
from worker.training import run_training

FEATURES = np.array([[5.1, 3.5], [7.0, 3.2], [6.3, 3.3], [4.9, 3.0]])
SPECIES = ["setosa", "versicolor", "virginica", "setosa"]
THREE_CLASSES = {
    "layers": [{"units": 4, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]
}


pytestmark = pytest.mark.parametrize("sessions", BACKENDS, indirect=True)


def parquet_bytes(**columns) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def post_file(client, data: bytes, filename: str, **form):
    body = {"task": "classification", **form, "file": (io.BytesIO(data), filename)}
    return client.post("/v1/datasets", data=body, content_type="multipart/form-data")


def created(response) -> dict:
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def stored_arrays(sessions, dataset_id: int) -> dict[str, np.ndarray]:
    with sessions() as session:
        x, y, weights = records.get_dataset_arrays(session, dataset_id)
    return {"X": x, "y": y} | ({} if weights is None else {"w": weights})


IRIS_PARQUET = parquet_bytes(
    sepal_length=FEATURES[:, 0], sepal_width=FEATURES[:, 1], species=SPECIES
)


def test_a_parquet_file_is_a_data_set_with_its_column_names(client, sessions):
    dataset = created(post_file(client, IRIS_PARQUET, "iris.parquet", target="species"))
    assert dataset["source"] == "parquet"
    assert dataset["feature_names"] == ["sepal_length", "sepal_width"]
    assert dataset["classes"] == ["setosa", "versicolor", "virginica"]
    arrays = stored_arrays(sessions, dataset["id"])
    assert np.array_equal(arrays["X"], FEATURES) and arrays["y"].tolist() == SPECIES


def test_parquet_columns_are_chosen_as_in_a_csv_file(client):
    data = parquet_bytes(
        id=[1, 2, 3, 4],
        a=[1.0, 2.0, 3.0, 4.0],
        b=[2, 1, 3, 2],
        y1=[3.5, 4, 6.5, 7],
        y2=[1, 2, 3, 4],
    )
    dataset = created(
        post_file(client, data, "points.pq", task="regression", target="y1,y2", drop="id")
    )
    assert (dataset["feature_names"], dataset["target_names"]) == (["a", "b"], ["y1", "y2"])
    assert dataset["target_stats"]["mean"] == [5.25, 2.5]
    only_b = created(post_file(client, data, "points.pq", target="id", features="b"))
    assert only_b["feature_names"] == ["b"] and only_b["classes"] == [1, 2, 3, 4]


def test_an_npz_file_gives_x_and_y_as_they_are(client, sessions):
    x = FEATURES.astype(np.float32)
    dataset = created(post_file(client, npz_bytes(X=x, y=np.array([0, 1, 2, 0])), "iris.npz"))
    assert (dataset["source"], dataset["rows"], dataset["features"]) == ("npz", 4, 2)
    arrays = stored_arrays(sessions, dataset["id"])
    assert arrays["X"].dtype == np.float32 and np.array_equal(arrays["X"], x)
    assert arrays["y"].tolist() == [0, 1, 2, 0]


def test_npz_arrays_are_named_by_the_form(client):
    data = npz_bytes(inputs=FEATURES, outputs=FEATURES.sum(axis=1), other=np.zeros(3))
    form = {"task": "regression", "features": "inputs", "target": "outputs"}
    dataset = created(post_file(client, data, "sums.npz", **form))
    assert dataset["target_stats"]["max"] == [10.2]


def test_the_format_field_wins_over_the_file_name(client):
    dataset = created(
        post_file(client, IRIS_PARQUET, "export.bin", format="parquet", target="species")
    )
    assert dataset["source"] == "parquet"


def test_a_job_trains_on_an_uploaded_parquet_file(client, sessions):
    dataset_id = created(post_file(client, IRIS_PARQUET, "iris.parquet", target="species"))["id"]
    body = job_body(dataset_id, epochs=3, network=THREE_CLASSES)
    job_id = client.post("/v1/jobs", json=body).get_json()["id"]
    run_training(sessions, job_id)
    assert client.get(f"/v1/jobs/{job_id}").get_json()["status"] == "succeeded"


def with_pandas_metadata(table: pa.Table, pandas: bytes) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata({b"pandas": pandas}), buffer)
    return buffer.getvalue()


INDEXED_TABLE = pa.table({"x": [1.0, 2.0], "__index_level_0__": [7, 9], "species": ["s", "v"]})


def test_a_pandas_index_column_is_not_a_feature(client):
    pandas = b'{"index_columns": ["__index_level_0__"], "columns": []}'
    data = with_pandas_metadata(INDEXED_TABLE, pandas)
    dataset = created(post_file(client, data, "frame.parquet", target="species"))
    assert dataset["feature_names"] == ["x"]


@pytest.mark.parametrize(
    "pandas", [b"{not json", b'["__index_level_0__"]', b'{"index_columns": 5}', b"null"]
)
def test_pandas_metadata_not_as_pandas_writes_it_names_no_index(client, pandas):
    data = with_pandas_metadata(INDEXED_TABLE, pandas)
    dataset = created(post_file(client, data, "frame.parquet", target="species"))
    assert dataset["feature_names"] == ["x", "__index_level_0__"]


def test_parquet_integers_beyond_float64s_precision_are_rounded_as_in_csv(client, sessions):
    big = [2**53 + 1, 2**63 - 1]
    data = parquet_bytes(
        signed=pa.array(big, pa.int64()),
        unsigned=pa.array([2**64 - 1, 2**53 + 1], pa.uint64()),
        y=[0.0, 1.0],
    )
    dataset = created(post_file(client, data, "big.parquet", task="regression", target="y"))
    features = stored_arrays(sessions, dataset["id"])["X"]
    assert features.tolist() == [[float(2**53 + 1), float(2**64 - 1)], [float(2**63 - 1), 2.0**53]]


def test_the_parse_s_freed_memory_is_returned_before_the_data_set_is_stored(
    client, sessions, row_counts, monkeypatch
):
    stored_when_trimmed = []  # the data sets stored each time the parse's memory is returned
    monkeypatch.setattr(
        uploads, "return_freed_memory", lambda: stored_when_trimmed.append(row_counts()["datasets"])
    )
    body = created(post_file(client, npz_bytes(X=FEATURES, y=np.array([0, 1, 2, 0])), "d.npz"))
    assert stored_when_trimmed == [0]
    assert np.array_equal(stored_arrays(sessions, body["id"])["X"], FEATURES)


def test_an_upload_failing_part_way_through_its_arrays_stores_neither_row(
    client, sessions, row_counts, monkeypatch
):
    """The data set's row is flushed before its arrays are written in pieces: a failure on the
    second piece rolls both back, and the next upload is stored whole."""
    x = np.random.default_rng(0).normal(size=(500, 8))  # a 36 kB .npz: 9 pieces of 4 kB
    data = npz_bytes(X=x, y=np.arange(500) % 2)
    monkeypatch.setattr(blob_writes, "PIECE_BYTES", 4096)
    pieces = blob_writes.file_pieces
    fail_blob_writes_after_one_piece(monkeypatch)
    with pytest.raises(OSError, match="went away"):  # the test app raises what a 500 answers
        post_file(client, data, "big.npz")
    assert row_counts()["datasets"] == 0
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(DatasetBlob)) == 0
    monkeypatch.setattr(blob_writes, "file_pieces", pieces)
    dataset = created(post_file(client, data, "big.npz"))
    np.testing.assert_array_equal(stored_arrays(sessions, dataset["id"])["X"], x)


def test_the_wal_checkpoint_of_an_upload_runs_once_its_response_is_closed(
    client, sessions, monkeypatch
):
    """The data set is stored (committed) when the 201 is sent; SQLite's copy of it from the
    WAL into the database file is left to the response's close, once per upload (a no-op on
    PostgreSQL)."""
    checkpoints = []
    resource = importlib.import_module("service.api.resources.datasets")  # not the blueprint
    monkeypatch.setattr(resource, "checkpoint_wal", checkpoints.append)
    data = npz_bytes(X=FEATURES, y=np.array([0, 1, 2, 0]))
    with client.post(
        "/v1/datasets",
        data={"task": "classification", "file": (io.BytesIO(data), "d.npz")},
        content_type="multipart/form-data",
        buffered=False,
    ) as response:
        body = created(response)
        assert checkpoints == []
        assert np.array_equal(stored_arrays(sessions, body["id"])["X"], FEATURES)
    assert [engine.url for engine in checkpoints] == [sessions.kw["bind"].url]
