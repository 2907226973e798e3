"""Fine-tuning a registered model over /v1: ``network.init_from`` resolved to a model id at
submission, the parent's specs as defaults, the checks as 422s naming the field, the lineage."""

import numpy as np
import pytest

from service.datasets.samples import load_sample
from tests.factories import assert_envelope
from worker.training import run_training

IRIS_NETWORK = {
    "layers": [{"units": 6, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
    "dtype": "float64",
}
# The layers as a resolved spec shows them: every default filled in.
RESOLVED_LAYERS = [{**layer, "dropout": 0.0} for layer in IRIS_NETWORK["layers"]]
TRAINING = {"epochs": 20, "batch_size": 16, "seed": 3}


def submitted(client, body: dict) -> dict:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def trained(client, sessions, body: dict) -> dict:
    """The job of ``body`` after the worker's own function ran it."""
    job = submitted(client, body)
    run_training(sessions, job["id"])
    job = client.get(f"/v1/jobs/{job['id']}").get_json()
    assert job["status"] == "succeeded", job["error"]
    return job


@pytest.fixture
def iris(client, sessions) -> dict:
    """The iris sample, and version 1 of ``flowers`` trained on it, aliased production."""
    dataset_id = client.post("/v1/datasets", json={"builtin": "iris"}).get_json()["id"]
    body = {"dataset_id": dataset_id, "network": IRIS_NETWORK, "training": TRAINING}
    job = trained(client, sessions, {**body, "model_name": "flowers"})
    client.put("/v1/models/flowers/aliases/production", json={"version": 1})
    return {"dataset_id": dataset_id, "model_id": job["model_id"]}


def predictions(client, model_id: int) -> list:
    x = load_sample("iris").X[::3].tolist()  # 50 rows: MAX_PREDICT_ROWS here
    return client.post(f"/v1/models/{model_id}/predict", json={"instances": x}).get_json()


def test_zero_epochs_from_an_alias_predict_as_the_parent_does(client, sessions, iris):
    body = {
        "dataset_id": iris["dataset_id"],
        "network": {"init_from": "flowers@production"},
        "training": {"epochs": 0},
    }
    job = trained(client, sessions, body)
    assert job["network"]["init_from"] == iris["model_id"]
    assert job["network"]["layers"] == RESOLVED_LAYERS
    assert job["network"]["dtype"] == "float64" and job["training"]["epochs"] == 0
    child, parent = predictions(client, job["model_id"]), predictions(client, iris["model_id"])
    assert child["probabilities"] == parent["probabilities"]
    shown = client.get(f"/v1/models/{job['model_id']}").get_json()
    assert shown["parent_model_id"] == iris["model_id"]
    assert shown["lineage"] == [
        {"model_id": iris["model_id"], "name": "flowers", "version": 1, "deleted": False}
    ]


def test_the_lineage_goes_back_to_a_model_from_fresh_weights(client, sessions, iris):
    body = {"dataset_id": iris["dataset_id"], "training": {**TRAINING, "epochs": 2}}
    child = trained(client, sessions, {**body, "network": {"init_from": "flowers"}})
    grandchild = trained(client, sessions, {**body, "network": {"init_from": child["model_id"]}})
    lineage = client.get(f"/v1/models/{grandchild['model_id']}").get_json()["lineage"]
    assert [a["model_id"] for a in lineage] == [child["model_id"], iris["model_id"]]
    assert client.get(f"/v1/models/{iris['model_id']}").get_json()["lineage"] == []
    assert client.delete(f"/v1/models/{child['model_id']}").status_code == 204
    lineage = client.get(f"/v1/models/{grandchild['model_id']}").get_json()["lineage"]
    assert lineage == [
        {"model_id": child["model_id"], "name": None, "version": None, "deleted": True}
    ]


def test_moving_the_alias_after_submission_changes_nothing(client, sessions, iris):
    body = {"dataset_id": iris["dataset_id"], "training": {**TRAINING, "epochs": 1}}
    job = submitted(client, {**body, "network": {"init_from": "flowers@production"}})
    second = trained(
        client,
        sessions,
        {**body, "network": IRIS_NETWORK, "model_name": "flowers"},
    )
    client.put("/v1/models/flowers/aliases/production", json={"version": 2})
    run_training(sessions, job["id"])
    model_id = client.get(f"/v1/jobs/{job['id']}").get_json()["model_id"]
    parent = client.get(f"/v1/models/{model_id}").get_json()["parent_model_id"]
    assert parent == iris["model_id"] != second["model_id"]


def test_replace_output_trains_on_a_data_set_with_other_classes(client, sessions, iris):
    sample = load_sample("iris")
    labels = np.where(sample.y == "setosa", "small", "large").tolist()
    body = {"task": "classification", "features": sample.X.tolist(), "targets": labels}
    dataset_id = client.post("/v1/datasets", json=body).get_json()["id"]
    job = {
        "dataset_id": dataset_id,
        "network": {"init_from": "flowers", "replace_output": True},
        "training": TRAINING,
    }
    assert_envelope(
        client.post("/v1/jobs", json={**job, "network": {"init_from": "flowers"}}),
        422,
        "network.layers[1].units",
    )
    done = trained(client, sessions, job)
    assert done["network"]["layers"][1] == {"units": 2, "activation": "softmax", "dropout": 0.0}
    model = client.get(f"/v1/models/{done['model_id']}").get_json()
    assert model["classes"] == ["large", "small"] and model["metrics"]["train_accuracy"] > 0.9


@pytest.mark.parametrize(
    ("network", "training", "field", "message"),
    [
        ({"init_from": "roses"}, {}, "network.init_from", "no model roses"),
        ({"init_from": "Roses!"}, {}, "network.init_from", "is not a model reference"),
        ({"init_from": 999}, {}, "network.init_from", "no model 999"),
        ({"init_from": ["flowers"]}, {}, "network.init_from", "must be a model reference"),
        ({"replace_output": True}, {}, "network.replace_output", "needs network.init_from"),
        (
            {"init_from": "flowers", "replace_output": "yes"},
            {},
            "network.replace_output",
            "must be true or false",
        ),
        (
            {
                "init_from": "flowers",
                "layers": [
                    {"units": 7, "activation": "tanh"},
                    {"units": 3, "activation": "softmax"},
                ],
            },
            {},
            "network.layers[0]",
            "has 7 tanh units; the model to fine-tune has 6 tanh units there",
        ),
        ({"init_from": "flowers"}, {"standardize": False}, "training.standardize", "must be true"),
        (IRIS_NETWORK, {"epochs": 0}, "training.epochs", "must be >= 1"),
    ],
)
def test_bad_fine_tuning_is_a_422_naming_the_field(client, iris, network, training, field, message):
    body = {"dataset_id": iris["dataset_id"], "network": network, "training": training}
    error = assert_envelope(client.post("/v1/jobs", json=body), 422, field)
    assert message in str(error["details"][field]), error
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert list(report["errors"]) == [field]


def test_validate_shows_the_specs_taken_from_the_model(client, iris):
    body = {"dataset_id": iris["dataset_id"], "network": {"init_from": "flowers@production"}}
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert report["valid"], report
    assert report["network"]["layers"] == RESOLVED_LAYERS
    assert report["network"]["init_from"] == iris["model_id"]


def test_a_job_whose_starting_model_was_deleted_fails_saying_so(client, sessions, iris):
    body = {"dataset_id": iris["dataset_id"], "network": {"init_from": "flowers:1"}}
    job = submitted(client, body)
    client.delete("/v1/models/flowers/aliases/production")
    assert client.delete("/v1/models/flowers:1").status_code == 204
    run_training(sessions, job["id"])
    failed = client.get(f"/v1/jobs/{job['id']}").get_json()
    assert failed["status"] == "failed"
    assert f"model {iris['model_id']} was deleted" in failed["error"]


def test_a_sweep_cannot_fine_tune(client, iris):
    body = {
        "dataset_id": iris["dataset_id"],
        "network": {**IRIS_NETWORK, "init_from": "flowers"},
        "training": TRAINING,
        "search": {"method": "grid", "parameters": {"training.l2": [0.0, 0.1]}},
        "metric": "train_loss",
    }
    assert_envelope(client.post("/v1/sweeps", json=body), 422, "network.init_from")
