"""/v1/models: show, predict (cached per process), weights, delete."""

import io

import numpy as np
import pytest
from flask import request

import model_core
from service.api.resources.models import wants_csv
from tests.factories import assert_envelope, job_body
from worker.training import run_training


@pytest.fixture
def model_id(client, sessions) -> int:
    """A model trained on XOR by the worker's own function (no worker process needed here)."""
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    job_id = client.post("/v1/jobs", json=job_body(dataset_id, epochs=500)).get_json()["id"]
    run_training(sessions, job_id)
    return client.get(f"/v1/jobs/{job_id}").get_json()["model_id"]


XOR_ROWS = [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_model_shows_spec_classes_standardization_and_metrics(client, model_id):
    model = client.get(f"/v1/models/{model_id}").get_json()
    assert model["classes"] == [0, 1]
    assert model["standardization"] == {"mean": [0.5, 0.5], "scale": [0.5, 0.5]}
    assert model["n_features"] == 2
    assert model["metrics"]["epochs_trained"] == 500
    assert model["metrics"]["train_accuracy"] == 1.0
    listed = client.get("/v1/models").get_json()
    assert [m["id"] for m in listed] == [model_id]
    assert "standardization" not in listed[0]  # it is in the blob, which a list does not load


def test_predict_gives_labels_and_probabilities(client, model_id):
    response = client.post(f"/v1/models/{model_id}/predict", json={"instances": XOR_ROWS})
    body = response.get_json()
    assert body["predictions"] == [0, 1, 1, 0]
    assert np.allclose(np.sum(body["probabilities"], axis=1), 1.0, atol=1e-5)


def loads_for_three_predictions(client, model_id, monkeypatch) -> int:
    """How often three predictions read the model from its stored bytes."""
    loads = []
    real_from_bytes = model_core.Model.from_bytes
    monkeypatch.setattr(
        model_core.Model, "from_bytes", lambda data: loads.append(1) or real_from_bytes(data)
    )
    for _ in range(3):
        client.post(f"/v1/models/{model_id}/predict", json={"instances": XOR_ROWS[:1]})
    return len(loads)


def test_the_model_is_loaded_once_per_process(client, model_id, monkeypatch):
    assert loads_for_three_predictions(client, model_id, monkeypatch) == 1


BAD_INSTANCES = {
    "wrong width": ('{"instances": [[0, 1, 1]]}', "instances"),
    "ragged rows": ('{"instances": [[0, 1], [1]]}', "instances"),
    "nested unevenly": ('{"instances": [[0, [1]], [1, 0]]}', "instances"),
    "3-D": ('{"instances": [[[0], [1]]]}', "instances"),
    "NaN": ('{"instances": [[0, NaN]]}', "instances[0][1]"),
    "Infinity": ('{"instances": [[Infinity, 0]]}', "instances[0][0]"),
    "strings": ('{"instances": [["a", "b"]]}', "instances[0][0]"),
    "a boolean among numbers": ('{"instances": [[0.5, true]]}', "instances[0][1]"),
    "null among numbers": ('{"instances": [[0.5, null]]}', "instances[0][1]"),
    "empty": ('{"instances": []}', "instances"),
    "not a list": ('{"instances": 3}', "instances"),
    "missing": ("{}", "instances"),
    "too many rows": ('{"instances": ' + str([[0, 1]] * 51) + "}", "instances"),
}


@pytest.mark.parametrize("case", BAD_INSTANCES, ids=list(BAD_INSTANCES))
def test_bad_instances_are_422(client, model_id, case):
    body, field = BAD_INSTANCES[case]
    response = client.post(
        f"/v1/models/{model_id}/predict", data=body, content_type="application/json"
    )
    assert_envelope(response, 422, field)


def test_weights_as_json_follow_model_cores_convention(client, model_id):
    weights = client.get(f"/v1/models/{model_id}/weights").get_json()
    assert {key: weights[key] for key in ("task", "dtype", "classes")} == {
        "task": "classification",
        "dtype": "float32",
        "classes": [0, 1],
    }
    assert [np.shape(layer["W"]) for layer in weights["layers"]] == [(2, 4), (4, 2)]
    assert [np.shape(layer["b"]) for layer in weights["layers"]] == [(4,), (2,)]
    assert [layer["activation"] for layer in weights["layers"]] == ["tanh", "softmax"]
    assert weights["standardization"] == {"mean": [0.5, 0.5], "scale": [0.5, 0.5]}


def test_weights_as_npz(client, model_id):
    response = client.get(f"/v1/models/{model_id}/weights?format=npz")
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    with np.load(io.BytesIO(response.data), allow_pickle=False) as arrays:
        assert sorted(arrays.files) == ["W0", "W1", "b0", "b1", "classes", "mean", "scale", "spec"]
    assert_envelope(client.get(f"/v1/models/{model_id}/weights?format=pickle"), 422, "format")


def test_deleted_model_is_gone_even_from_the_cache(client, model_id):
    client.post(f"/v1/models/{model_id}/predict", json={"instances": XOR_ROWS})
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert_envelope(
        client.post(f"/v1/models/{model_id}/predict", json={"instances": XOR_ROWS}), 404
    )
    assert_envelope(client.get(f"/v1/models/{model_id}"), 404)
    assert_envelope(client.delete(f"/v1/models/{model_id}"), 404)


def test_unknown_model_is_404(client):
    assert_envelope(client.get("/v1/models/999"), 404)
    assert_envelope(client.post("/v1/models/999/predict", json={"instances": XOR_ROWS}), 404)
    assert_envelope(client.get("/v1/models/999/weights"), 404)


@pytest.mark.parametrize(
    "instances, message, detail",
    [
        ([[0, 1]] * 51, "Too many rows.", "at most 50 rows per call"),
        ([[0, 1, 2]], "Wrong number of features.", "each row needs 2 values; got 3"),
    ],
    ids=["rows", "width"],
)
def test_rows_that_do_not_fit_say_what_is_wrong(client, model_id, instances, message, detail):
    response = client.post(f"/v1/models/{model_id}/predict", json={"instances": instances})
    error = assert_envelope(response, 422, "instances")
    assert (error["message"], error["details"]["instances"]) == (message, [detail])


def test_weights_too_large_for_json_are_a_422_pointing_to_npz(client_with, sessions, model_id):
    client = client_with(max_request_memory=1000)  # XOR's 2-4-1 network: 17 x 80 bytes
    error = assert_envelope(client.get(f"/v1/models/{model_id}/weights"), 422, "format")
    assert "?format=npz" in error["message"]
    assert client.get(f"/v1/models/{model_id}/weights?format=npz").status_code == 200


def test_the_model_cache_is_bounded_in_bytes(client_with, model_id, monkeypatch):
    client = client_with(model_cache_bytes=50)  # XOR: 17 parameters + mean and scale, > 50 B
    # larger than the whole cache: never kept
    assert loads_for_three_predictions(client, model_id, monkeypatch) == 3


ACCEPTS = [None, "*/*", "application/json", "text/csv", "text/*", "text/csv, */*;q=0.1"]


@pytest.mark.parametrize("accept", [*ACCEPTS, "*/*;q=0.5, text/csv"])
def test_the_answers_type_is_werkzeugs_negotiation(app, accept):
    """``wants_csv`` answers the usual headers itself: as werkzeug's negotiation does."""
    headers = {} if accept is None else {"Accept": accept}
    with app.test_request_context("/v1/models/1/predict", headers=headers):
        negotiated = request.accept_mimetypes.best_match(["application/json", "text/csv"])
        assert wants_csv(request) == (negotiated == "text/csv")
