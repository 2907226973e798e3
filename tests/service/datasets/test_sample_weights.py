"""Row weights on uploads (``weight`` beside ``target`` in CSV and Parquet, ``sample_weights`` in
JSON), class weights on jobs, and a job on a weighted data set training as model_core does with
those weights."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model_core import train
from service.db import records
from tests.factories import assert_envelope, job_body
from worker.training import run_training

IRIS_LIKE = {
    "features": [[5.1, 3.5], [7.0, 3.2], [6.3, 3.3], [4.9, 3.0], [6.4, 3.2], [5.8, 2.7]],
    "targets": ["setosa", "versicolor", "virginica", "setosa", "versicolor", "virginica"],
}
WEIGHTS = [1.0, 2.0, 0.5, 0.0, 3.0, 1.0]
CSV = b"a,b,w,species\n5.1,3.5,1,setosa\n7.0,3.2,2,versicolor\n6.3,3.3,0.5,virginica\n"
THREE_CLASSES = {
    "layers": [{"units": 4, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
    "dtype": "float64",
}


def post_json(client, **changes):
    body = {"task": "classification", **IRIS_LIKE, **changes}
    return client.post("/v1/datasets", json=body)


def post_file(client, data: bytes, filename: str, **form):
    body = {**form, "file": (io.BytesIO(data), filename)}
    return client.post("/v1/datasets", data=body, content_type="multipart/form-data")


def parquet_bytes(**columns) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def stored_weights(sessions, dataset_id: int):
    with sessions() as session:
        return records.get_dataset_arrays(session, dataset_id).sample_weight


def test_json_sample_weights_are_stored_with_the_rows(client, sessions):
    response = post_json(client, sample_weights=WEIGHTS)
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert dataset["weighted"] is True
    assert stored_weights(sessions, dataset["id"]).tolist() == WEIGHTS
    rows = client.get(f"/v1/datasets/{dataset['id']}/rows?limit=2").get_json()
    assert rows["sample_weights"] == [1.0, 2.0]
    plain = post_json(client).get_json()
    assert plain["weighted"] is False and stored_weights(sessions, plain["id"]) is None


def test_a_csv_weight_column_is_neither_feature_nor_target(client, sessions):
    response = post_file(client, CSV, "iris.csv", target="species", weight="w")
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert dataset["feature_names"] == ["a", "b"] and dataset["weighted"]
    assert stored_weights(sessions, dataset["id"]).tolist() == [1.0, 2.0, 0.5]


def test_a_parquet_weight_column_weighs_a_regression(client, sessions):
    data = parquet_bytes(a=[1.0, 2.0, 3.0], w=pa.array([1, 0, 4], pa.int32()), y=[0.5, 1.5, 2.5])
    form = {"task": "regression", "target": "y", "weight": "w"}
    dataset = post_file(client, data, "points.parquet", **form).get_json()
    assert dataset["feature_names"] == ["a"] and dataset["target_names"] == ["y"]
    assert stored_weights(sessions, dataset["id"]).tolist() == [1.0, 0.0, 4.0]


@pytest.mark.parametrize(
    ("upload", "field", "message"),
    [
        (lambda c: post_json(c, sample_weights=[1, 1, -2, 1, 1, 1]), "sample_weights", "row 2"),
        (lambda c: post_json(c, sample_weights=[1, 1, "x", 1, 1, 1]), "sample_weights[2]", "'x'"),
        (lambda c: post_json(c, sample_weights=[1, 1]), "sample_weights", "one weight per row"),
        (lambda c: post_json(c, sample_weights=[0] * 6), "sample_weights", "every weight is 0"),
        (
            lambda c: post_json(c, sample_weights=[1e308] * 6),
            "sample_weights",
            "more than a 64-bit float holds",
        ),
        (
            lambda c: post_file(
                c, CSV.replace(b",2,", b",-1,"), "i.csv", target="species", weight="w"
            ),
            "weight",
            "row 1: -1.0 is not a weight",
        ),
        (
            lambda c: post_file(
                c, CSV.replace(b",2,", b",two,"), "i.csv", target="species", weight="w"
            ),
            "weight",
            "line 3, column 'w': 'two' is not a number",
        ),
        (
            lambda c: post_file(c, CSV, "i.csv", target="species", weight="nope"),
            "weight",
            "no column 'nope'",
        ),
        (
            lambda c: post_file(c, CSV, "i.csv", target="species", weight="species"),
            "weight",
            "is a target",
        ),
        (
            lambda c: post_file(
                c,
                parquet_bytes(a=[1.0, 2.0], w=["x", "y"], y=[0, 1]),
                "p.parquet",
                target="y",
                weight="w",
            ),
            "weight",
            "holds string, not numbers",
        ),
    ],
)
def test_bad_weights_are_a_422_naming_the_row(client, upload, field, message):
    error = assert_envelope(upload(client), 422, field)
    assert message in str(error["details"][field]), error


def job_on(client, dataset_id: int, **training) -> dict:
    body = job_body(dataset_id, epochs=20, network=THREE_CLASSES)
    body["training"].update({"standardize": False, "shuffle": False, **training})
    return body


def test_a_job_on_a_weighted_data_set_trains_as_model_core_does(client, sessions):
    dataset_id = post_json(client, sample_weights=WEIGHTS).get_json()["id"]
    body = job_on(client, dataset_id, class_weight={"setosa": 2})
    job_id = client.post("/v1/jobs", json=body).get_json()["id"]
    run_training(sessions, job_id)
    job = client.get(f"/v1/jobs/{job_id}").get_json()
    assert job["status"] == "succeeded" and job["training"]["class_weight"] == {"setosa": 2.0}
    expected = train(
        np.array(IRIS_LIKE["features"]),
        np.array(IRIS_LIKE["targets"]),
        THREE_CLASSES,
        body["training"],
        sample_weight=WEIGHTS,
    )
    epochs = client.get(f"/v1/jobs/{job_id}/epochs").get_json()
    assert [e["train_loss"] for e in epochs] == [r["train_loss"] for r in expected.history]


def test_an_unknown_class_weight_label_is_a_422_naming_it(client):
    dataset_id = post_json(client).get_json()["id"]
    body = job_on(client, dataset_id, class_weight={"setosa": 2, "tulip": 1})
    error = assert_envelope(client.post("/v1/jobs", json=body), 422, "training.class_weight.tulip")
    assert "unknown label 'tulip'" in str(error["details"])
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert list(report["errors"]) == ["training.class_weight.tulip"]
    balanced = client.post(
        "/v1/jobs/validate", json=job_on(client, dataset_id, class_weight="balanced")
    )
    assert balanced.get_json()["training"]["class_weight"] == "balanced"
