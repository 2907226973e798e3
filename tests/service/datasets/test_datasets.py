"""POST/GET/DELETE /v1/datasets: JSON, CSV and built-in uploads, and every refusal."""

import io

import pytest

from tests.factories import assert_envelope, job_body
from worker.training import run_training

IRIS_CSV = (
    "sepal_length,sepal_width,petal_length,petal_width,species\n"
    "5.1,3.5,1.4,0.2,setosa\n"
    "7.0,3.2,4.7,1.4,versicolor\n"
    "6.3,3.3,6.0,2.5,virginica\n"
    "4.9,3.0,1.4,0.2,setosa\n"
)


def post_csv(client, text: str, **form):
    data = {"task": "classification", "target": "species", **form}
    data["file"] = (io.BytesIO(text.encode()), "iris.csv")
    return client.post("/v1/datasets", data=data, content_type="multipart/form-data")


def test_json_upload_reports_shape_and_classes(client):
    body = {
        "name": "tiny",
        "task": "classification",
        "features": [[0, 0], [0, 1], [1, 0], [1, 1]],
        "targets": ["no", "yes", "yes", "no"],
    }
    response = client.post("/v1/datasets", json=body)
    assert response.status_code == 201
    dataset = response.get_json()
    assert (dataset["rows"], dataset["features"], dataset["outputs"]) == (4, 2, 2)
    assert dataset["classes"] == ["no", "yes"]
    assert dataset.pop("task_inferred") is False  # the upload's answer alone says it
    assert client.get(f"/v1/datasets/{dataset['id']}").get_json() == dataset


def test_regression_upload_reports_target_statistics(client):
    body = {
        "task": "regression",
        "features": [[1], [2], [3]],
        "targets": [[1, 10], [2, 20], [3, 30]],
    }
    dataset = client.post("/v1/datasets", json=body).get_json()
    assert dataset["outputs"] == 2
    assert dataset["target_stats"]["mean"] == [2.0, 20.0]
    assert dataset["classes"] is None


def test_builtin_sample(client):
    dataset = client.post("/v1/datasets", json={"builtin": "digits"}).get_json()
    assert (dataset["rows"], dataset["features"], dataset["classes"]) == (1797, 64, list(range(10)))
    assert dataset["source"] == "builtin"


def test_csv_upload_with_header(client):
    response = post_csv(client, IRIS_CSV)
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert dataset["feature_names"] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert dataset["target_names"] == ["species"]
    assert dataset["classes"] == ["setosa", "versicolor", "virginica"]
    assert dataset["source"] == "csv"


def test_csv_upload_without_header_names_columns_by_number(client):
    text = "\n".join(IRIS_CSV.splitlines()[1:])
    dataset = post_csv(client, text, target="4", header="false").get_json()
    assert dataset["rows"] == 4 and dataset["features"] == 4


def test_csv_regression_with_two_target_columns(client):
    text = "x,y1,y2\n1,2,3\n2,4,6\n3,6,9\n"
    dataset = post_csv(client, text, task="regression", target="y1, y2").get_json()
    assert (dataset["features"], dataset["outputs"]) == (1, 2)


BAD_JSON_UPLOADS = {
    "wrong task type": ({"task": 5, "features": [[1]], "targets": [0]}, "task"),
    "unknown task": ({"task": "ranking", "features": [[1]], "targets": [0]}, "task"),
    "features not rows": ({"task": "regression", "features": "abc", "targets": [0]}, "features"),
    "strings in features": (
        {"task": "regression", "features": [["a"], ["b"]], "targets": [0, 1]},
        "features[0][0]",
    ),
    "ragged rows": (
        {"task": "classification", "features": [[1, 2], [3]], "targets": [0, 1]},
        "features",
    ),
    "nested unevenly": (
        {"task": "classification", "features": [[1, [2]], [3, 4]], "targets": [0, 1]},
        "features",
    ),
    "3-D features": (
        {"task": "classification", "features": [[[1], [2]], [[3], [4]]], "targets": [0, 1]},
        "features",
    ),
    "empty data set": ({"task": "classification", "features": [], "targets": []}, "features"),
    "empty rows": ({"task": "classification", "features": [[], []], "targets": [0, 1]}, "features"),
    "missing targets": ({"task": "classification", "features": [[1], [2]]}, "targets"),
    "row count mismatch": (
        {"task": "classification", "features": [[1], [2]], "targets": [0, 1, 1]},
        "targets",
    ),
    "one class": ({"task": "classification", "features": [[1], [2]], "targets": [1, 1]}, "targets"),
    "float labels": (
        {"task": "classification", "features": [[1], [2]], "targets": [0.5, 1]},
        "targets",
    ),
    "unknown sample": ({"builtin": "mnist"}, "builtin"),
    "sample and data": ({"builtin": "xor", "features": [[1]]}, "features"),
    "unknown field": ({"builtin": "xor", "colour": "red"}, "colour"),
    "column choices are for CSV": (
        {"task": "regression", "features": [[1], [2]], "targets": [1, 2], "drop": [0]},
        "drop",
    ),
    "too many rows": (
        {"task": "regression", "features": [[1]] * 1001, "targets": [1] * 1001},
        "features",
    ),
}


@pytest.mark.parametrize("case", BAD_JSON_UPLOADS, ids=list(BAD_JSON_UPLOADS))
def test_bad_json_upload_is_422_and_stores_nothing(client, row_counts, case):
    body, field = BAD_JSON_UPLOADS[case]
    assert_envelope(client.post("/v1/datasets", json=body), 422, field)
    assert row_counts()["datasets"] == 0


def test_nan_in_features_is_422_naming_the_cell(client, row_counts):
    body = '{"task": "regression", "features": [[1.0], [NaN]], "targets": [1, 2]}'
    response = client.post("/v1/datasets", data=body, content_type="application/json")
    assert_envelope(response, 422, "features[1][0]")
    assert row_counts()["datasets"] == 0


def test_malformed_json_is_400(client, row_counts):
    response = client.post("/v1/datasets", data='{"task": ', content_type="application/json")
    assert assert_envelope(response, 400, "json")["code"] == "bad_request"
    assert row_counts()["datasets"] == 0


def test_other_content_types_are_415(client):
    assert_envelope(client.post("/v1/datasets", data="a,b", content_type="text/csv"), 415)


BAD_CSV_UPLOADS = {
    "no target column": (IRIS_CSV, {"target": "label"}, "target"),
    "target number out of range": (IRIS_CSV, {"target": "9", "header": "false"}, "target"),
    "text in a feature": ("a,b\nx,1\ny,2\n", {"target": "b", "task": "regression"}, "file"),
    "text in a regression target": (
        "a,b\n1,x\n2,y\n",
        {"target": "b", "task": "regression"},
        "target",
    ),
    "header only": ("a,label\n", {"target": "label"}, "file"),
    "ragged line": ("a,b,label\n1,2,x\n3,y\n", {"target": "label"}, "file"),
    "only the target": ("label\nx\ny\n", {"target": "label"}, "file"),
    "a field over 128 kB": ("a,label\n" + "1" * 140_000 + ",x\n2,y\n", {"target": "label"}, "file"),
}


@pytest.mark.parametrize("case", BAD_CSV_UPLOADS, ids=list(BAD_CSV_UPLOADS))
def test_bad_csv_upload_is_422_and_stores_nothing(client, row_counts, case):
    text, form, field = BAD_CSV_UPLOADS[case]
    fields = {"task": "classification", "target": "species", **form}
    data = {key: value for key, value in fields.items() if value is not None}
    data["file"] = (io.BytesIO(text.encode()), "data.csv")
    response = client.post("/v1/datasets", data=data, content_type="multipart/form-data")
    assert_envelope(response, 422, field)
    assert row_counts()["datasets"] == 0


def test_csv_without_a_file_is_422(client):
    data = {"task": "classification", "target": "species"}
    response = client.post("/v1/datasets", data=data, content_type="multipart/form-data")
    assert_envelope(response, 422, "file")


def test_oversized_body_is_413(client, row_counts):
    body = {"task": "regression", "features": [[1.0] * 10] * 5000, "targets": [1.0] * 5000}
    error = assert_envelope(client.post("/v1/datasets", json=body), 413)
    assert "MAX_REQUEST_BYTES" in error["message"]
    assert row_counts()["datasets"] == 0


MIXED_CSV = "name,a,b,y\nalpha,1,2,3.5\nbeta,2,1,4.0\ngamma,3,3,6.5\ndelta,4,2,7.0\n"
REGRESSION_NETWORK = {
    "layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "linear"}],
}


def post_mixed(client, text: str = MIXED_CSV, **form):
    return post_csv(client, text, **{"task": "regression", "target": "y", **form})


COLUMN_CHOICES = {
    "drop the text column": ({"drop": "name"}, ["a", "b"]),
    "features": ({"features": "a,b"}, ["a", "b"]),
    "features in their listed order": ({"features": "b, a"}, ["b", "a"]),
    "one feature": ({"features": "b"}, ["b"]),
    "drop two columns": ({"drop": "name,a"}, ["b"]),
}


@pytest.mark.parametrize("case", COLUMN_CHOICES, ids=list(COLUMN_CHOICES))
def test_a_csv_with_a_text_column_makes_a_regression_data_set(client, case):
    form, feature_names = COLUMN_CHOICES[case]
    response = post_mixed(client, **form)
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert dataset["feature_names"] == feature_names
    assert (dataset["features"], dataset["target_names"]) == (len(feature_names), ["y"])
    body = job_body(dataset["id"], network=REGRESSION_NETWORK)
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert report["valid"], report["errors"]


def test_a_regression_trains_on_the_chosen_columns(client, sessions):
    dataset_id = post_mixed(client, drop="name").get_json()["id"]
    body = job_body(dataset_id, epochs=20, network=REGRESSION_NETWORK)
    job_id = client.post("/v1/jobs", json=body).get_json()["id"]
    run_training(sessions, job_id)
    job = client.get(f"/v1/jobs/{job_id}").get_json()
    assert job["status"] == "succeeded", job["error"]
    model = client.get(f"/v1/models/{job['model_id']}").get_json()
    assert model["n_features"] == 2


def test_columns_are_chosen_by_number_without_a_header(client):
    text = "\n".join(MIXED_CSV.splitlines()[1:])
    dataset = post_mixed(client, text, target="3", features="2,1", header="false").get_json()
    assert (dataset["feature_names"], dataset["target_names"]) == (["2", "1"], ["3"])


BAD_COLUMN_CHOICES = {
    "an unknown feature": ({"features": "a,c"}, ["features"]),
    "an unknown column to drop": ({"drop": "nme"}, ["drop"]),
    "features and drop together": ({"features": "a,b", "drop": "name"}, ["features", "drop"]),
    "the target as a feature": ({"features": "a,y"}, ["features"]),
    "the target dropped": ({"drop": "name,y"}, ["drop"]),
    "a feature listed twice": ({"features": "a,b,a"}, ["features"]),
    "a target listed twice": ({"target": "y,y"}, ["target"]),
    "an empty name": ({"features": "a,,b"}, ["features"]),
    "a trailing comma": ({"drop": "name,"}, ["drop"]),
    "nothing left": ({"drop": "name,a,b"}, ["drop"]),
    "a text column kept": ({"drop": "a"}, ["file"]),
    "a name without a header": (
        {"header": "false", "target": "3", "features": "a"},
        ["features"],
    ),
    "a number past the last column": (
        {"header": "false", "target": "3", "drop": "0,4"},
        ["drop"],
    ),
}


@pytest.mark.parametrize("case", BAD_COLUMN_CHOICES, ids=list(BAD_COLUMN_CHOICES))
def test_a_bad_column_choice_is_422_naming_the_field(client, row_counts, case):
    form, fields = BAD_COLUMN_CHOICES[case]
    text = MIXED_CSV if form.get("header") != "false" else "\n".join(MIXED_CSV.splitlines()[1:])
    error = assert_envelope(post_mixed(client, text, **form), 422)
    assert sorted(error["details"]) == sorted(fields)
    assert row_counts()["datasets"] == 0


def test_list_is_paginated(client):
    for _ in range(3):
        client.post("/v1/datasets", json={"builtin": "xor"})
    response = client.get("/v1/datasets?page=2&page_size=2")
    assert [dataset["id"] for dataset in response.get_json()] == [3]
    assert '"total": 3' in response.headers["X-Pagination"]


def test_unknown_dataset_is_404(client):
    assert_envelope(client.get("/v1/datasets/999"), 404)
    assert_envelope(client.delete("/v1/datasets/999"), 404)


def test_delete_is_409_while_a_job_uses_it(client, row_counts):
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    assert client.post("/v1/jobs", json=job_body(dataset_id)).status_code == 202
    assert_envelope(client.delete(f"/v1/datasets/{dataset_id}"), 409)
    assert row_counts()["datasets"] == 1


def test_delete_unused_dataset(client):
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert_envelope(client.get(f"/v1/datasets/{dataset_id}"), 404)


def test_rows_preview_shows_the_first_rows_with_their_column_names(client):
    dataset = post_csv(client, IRIS_CSV).get_json()
    preview = client.get(f"/v1/datasets/{dataset['id']}/rows?limit=2").get_json()
    assert preview == {
        "feature_names": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
        "target_names": ["species"],
        "features": [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4]],
        "targets": ["setosa", "versicolor"],
        "sample_weights": None,
    }


def test_rows_preview_names_unnamed_columns_by_number(client):
    body = {"task": "regression", "features": [[1, 2], [3, 4]], "targets": [[0.5, 1], [2, 3]]}
    dataset = client.post("/v1/datasets", json=body).get_json()
    preview = client.get(f"/v1/datasets/{dataset['id']}/rows").get_json()
    assert (preview["feature_names"], preview["target_names"]) == (["x0", "x1"], ["y0", "y1"])
    assert preview["features"] == [[1, 2], [3, 4]]
    assert preview["targets"] == [[0.5, 1], [2, 3]]


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_rows_preview_refuses_a_bad_limit_naming_it(client, limit):
    dataset = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()
    response = client.get(f"/v1/datasets/{dataset['id']}/rows?limit={limit}")
    assert_envelope(response, 422, "limit")


def test_rows_preview_of_an_unknown_data_set_is_404(client):
    assert_envelope(client.get("/v1/datasets/999/rows"), 404)
