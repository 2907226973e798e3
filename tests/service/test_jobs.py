"""POST /v1/jobs and /v1/jobs/validate: specs checked against the data before anything is queued."""

import pytest

from service import create_app
from service.db.models import TrainingJob
from service.settings import Settings
from tests.factories import XOR_NETWORK, assert_envelope, job_body


@pytest.fixture
def xor_id(client) -> int:
    return client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]


def test_submit_answers_202_with_location_and_queues_one_message(client, xor_id, queued_messages):
    response = client.post("/v1/jobs", json=job_body(xor_id, epochs=50))
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"].endswith(f"/v1/jobs/{job['id']}")
    assert (job["status"], job["attempt"], job["epoch"], job["epochs"]) == ("queued", 0, 0, 50)
    assert job["network"]["loss"] == "cross_entropy"
    assert isinstance(job["training"]["seed"], int)
    assert queued_messages() == 1
    assert client.get(response.headers["Location"]).get_json() == job


def test_the_given_seed_is_kept(client, xor_id):
    body = job_body(xor_id)
    body["training"]["seed"] = 1234
    assert client.post("/v1/jobs", json=body).get_json()["training"]["seed"] == 1234


BAD_SPECS = {
    "unknown activation": (
        {"layers": [{"units": 4, "activation": "sigmod"}, {"units": 2, "activation": "softmax"}]},
        "network.layers[0].activation",
    ),
    "wrong output width": (
        {"layers": [{"units": 4, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]},
        "network.layers[1].units",
    ),
    "loss for another output": (
        {
            "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "softmax"}],
            "loss": "binary_cross_entropy",
        },
        "network.loss",
    ),
    "no layers": ({"layers": []}, "network.layers"),
}


@pytest.mark.parametrize("case", BAD_SPECS, ids=list(BAD_SPECS))
def test_bad_spec_is_422_keyed_by_path_and_nothing_is_queued(
    client, xor_id, row_counts, queued_messages, case
):
    network, path = BAD_SPECS[case]
    assert_envelope(client.post("/v1/jobs", json=job_body(xor_id, network=network)), 422, path)
    assert row_counts()["training_jobs"] == 0
    assert queued_messages() == 0


def test_bad_training_spec_is_422(client, xor_id, row_counts):
    body = {"dataset_id": xor_id, "network": XOR_NETWORK, "training": {"epochs": -1}}
    assert_envelope(client.post("/v1/jobs", json=body), 422, "training.epochs")
    assert row_counts()["training_jobs"] == 0


def test_regression_loss_on_classes_is_422(client):
    body = {"task": "regression", "features": [[0], [1], [2]], "targets": [0.0, 1.0, 2.0]}
    dataset_id = client.post("/v1/datasets", json=body).get_json()["id"]
    network = {"layers": [{"units": 1, "activation": "sigmoid"}], "loss": "binary_cross_entropy"}
    assert_envelope(client.post("/v1/jobs", json=job_body(dataset_id, network=network)), 422)


BAD_BODIES = {
    "dataset id as string": ({"dataset_id": "1", "network": XOR_NETWORK}, "dataset_id"),
    "network not an object": ({"dataset_id": 1, "network": [1]}, "network"),
    "missing network": ({"dataset_id": 1}, "network"),
    "unknown dataset": ({"dataset_id": 999, "network": XOR_NETWORK}, "dataset_id"),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_bad_body_is_422(client, xor_id, row_counts, case):
    body, field = BAD_BODIES[case]
    assert_envelope(client.post("/v1/jobs", json=body), 422, field)
    assert row_counts()["training_jobs"] == 0


def test_malformed_json_is_400(client, row_counts):
    response = client.post("/v1/jobs", data="{", content_type="application/json")
    assert_envelope(response, 400, "json")
    assert row_counts()["training_jobs"] == 0


def test_validate_reports_defaults_and_warnings_without_queuing(
    client, xor_id, row_counts, queued_messages
):
    body = job_body(xor_id)
    body["training"] = {"batch_size": 64}
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert report["valid"] is True and report["errors"] == {}
    assert report["training"]["epochs"] == 100
    assert any("batch_size" in warning for warning in report["warnings"])
    assert row_counts()["training_jobs"] == 0
    assert queued_messages() == 0


def test_validate_reports_errors_by_path(client, xor_id):
    network = BAD_SPECS["unknown activation"][0]
    report = client.post("/v1/jobs/validate", json=job_body(xor_id, network=network)).get_json()
    assert report["valid"] is False
    assert "network.layers[0].activation" in report["errors"]


def test_validate_unknown_dataset(client):
    report = client.post("/v1/jobs/validate", json=job_body(999)).get_json()
    assert report["errors"] == {"dataset_id": ["no data set with id 999"]}


def test_unknown_job_is_404(client):
    assert_envelope(client.get("/v1/jobs/999"), 404)
    assert_envelope(client.get("/v1/jobs/999/epochs"), 404)


def test_epochs_query_is_checked(client, xor_id):
    job_id = client.post("/v1/jobs", json=job_body(xor_id)).get_json()["id"]
    assert client.get(f"/v1/jobs/{job_id}/epochs").get_json() == []
    assert_envelope(client.get(f"/v1/jobs/{job_id}/epochs?after=-1"), 422, "after")
    assert_envelope(client.get(f"/v1/jobs/{job_id}/epochs?after=x"), 422, "after")


def test_a_broker_that_refuses_is_503_and_the_job_is_marked_failed(xor_id, app):
    settings = Settings(
        database_url=app.extensions["backprop"].settings.database_url,
        broker_url="redis://127.0.0.1:1/0",
        broker_timeout_seconds=0.2,
    )
    client = create_app(settings).test_client()
    assert_envelope(client.post("/v1/jobs", json=job_body(xor_id)), 503)
    job = client.get("/v1/jobs").get_json()[0]
    assert job["status"] == "failed" and "could not be queued" in job["error"]


def test_jobs_list_is_paginated(client, xor_id):
    for _ in range(3):
        client.post("/v1/jobs", json=job_body(xor_id))
    assert len(client.get("/v1/jobs?page_size=2").get_json()) == 2


def test_initial_weights_are_stored_apart_and_not_echoed(client, xor_id, sessions):
    weights = [
        {"W": [[0.1] * 4, [0.2] * 4], "b": [0.0] * 4},
        {"W": [[0.3] * 2] * 4, "b": [0.0] * 2},
    ]
    body = job_body(xor_id, network={**XOR_NETWORK, "initial_weights": weights})
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert report["valid"] and "initial_weights" not in report["network"]
    job = client.post("/v1/jobs", json=body).get_json()
    assert "initial_weights" not in job["network"]
    with sessions() as session:
        stored = session.get(TrainingJob, job["id"]).engine_network()["initial_weights"]
    assert stored[1]["W"][0] == [0.3, 0.3]
