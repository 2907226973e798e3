"""A job's cost checked at submission (issue 21, row 5): layers, widths and the working set, each
a 422 naming the field to change, on /v1/jobs/validate, /v1/jobs and /v1/sweeps alike."""

import numpy as np
import pytest

from service.jobs.costs import working_set
from tests.factories import assert_envelope, job_body, sweep_body

WIDE = {"layers": [{"units": 20_000, "activation": "relu"}, {"units": 2, "activation": "softmax"}]}


@pytest.fixture
def thousand_rows_id(client) -> int:
    """1,000 rows of 2 features, two classes."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(1000, 2)).round(3).tolist()
    body = {"task": "classification", "features": features, "targets": [0, 1] * 500}
    return client.post("/v1/datasets", json=body).get_json()["id"]


def wide_job(dataset_id: int, batch_size) -> dict:
    body = job_body(dataset_id, epochs=1, network=WIDE)
    body["training"]["batch_size"] = batch_size
    return body


def test_full_batch_over_a_wide_layer_is_422_naming_the_batch_size(
    client_with, thousand_rows_id, row_counts
):
    """2 x 1,000 rows x 20,002 units x 4 bytes: about 153 MiB of activations."""
    client = client_with(max_job_memory=64 * 1024**2)
    response = client.post("/v1/jobs", json=wide_job(thousand_rows_id, "full"))
    error = assert_envelope(response, 422, "training.batch_size")
    assert "MAX_JOB_MEMORY" in error["message"] and "153 MiB" in error["message"]
    assert row_counts()["training_jobs"] == 0
    report = client.post("/v1/jobs/validate", json=wide_job(thousand_rows_id, "full")).get_json()
    assert not report["valid"] and "training.batch_size" in report["errors"]
    report = client.post("/v1/jobs/validate", json=wide_job(thousand_rows_id, 32)).get_json()
    assert report["valid"], report


def test_a_sweep_with_a_trial_over_the_memory_limit_is_422(client_with, thousand_rows_id):
    client = client_with(max_job_memory=64 * 1024**2)
    body = {**sweep_body(thousand_rows_id), **wide_job(thousand_rows_id, "full")}
    body["search"] = {"method": "grid", "parameters": {"training.optimizer.learning_rate": [0.1]}}
    response = client.post("/v1/sweeps", json=body)
    assert response.status_code == 422, response.get_json()
    assert "MAX_JOB_MEMORY" in response.get_json()["error"]["message"]


def test_too_many_layers_is_422_naming_the_layers(client_with, thousand_rows_id):
    layers = [{"units": 2, "activation": "tanh"}] * 4 + [{"units": 2, "activation": "softmax"}]
    body = job_body(thousand_rows_id, network={"layers": layers})
    response = client_with(max_layers=4).post("/v1/jobs", json=body)
    assert "MAX_LAYERS" in assert_envelope(response, 422, "network.layers")["message"]


def test_a_layer_wider_than_the_limit_is_422_naming_its_units(client_with, thousand_rows_id):
    response = client_with(max_layer_width=10_000).post(
        "/v1/jobs", json=wide_job(thousand_rows_id, 32)
    )
    error = assert_envelope(response, 422, "network.layers[0].units")
    assert "MAX_LAYER_WIDTH" in error["message"]


def test_the_working_set_counts_data_parameters_slots_and_activations():
    network = {
        "dtype": "float64",
        "layers": [{"units": 10, "dropout": 0.0}, {"units": 3, "dropout": 0.0}],
    }
    adam = {"optimizer": {"name": "adam"}, "early_stopping": None, "batch_size": "full"}
    costs = working_set(network, adam, n_samples=100, n_features=5, n_parameters=93)
    assert costs == {
        "dataset_id": 100 * (5 + 3) * 8,
        "network.layers": 93 * (1 + 1 + 2 + 1) * 8,  # weights, gradients, slots, the result
        "training.batch_size": 2 * 100 * 13 * 8,
    }
    sgd = {**adam, "optimizer": {"name": "sgd", "momentum": 0.0}, "batch_size": 10}
    costs = working_set(network, sgd, n_samples=100, n_features=5, n_parameters=93)
    assert costs["network.layers"] == 93 * 3 * 8
    assert costs["training.batch_size"] == 2 * 10 * 13 * 8


def test_row_weights_and_a_starting_model_are_counted():
    layers = [{"units": 10, "dropout": 0.0}, {"units": 3, "dropout": 0.0}]
    network = {"dtype": "float32", "layers": layers}
    sgd = {"optimizer": {"name": "sgd", "momentum": 0.0}, "early_stopping": None, "batch_size": 10}
    plain = working_set(network, sgd, n_samples=100, n_features=5, n_parameters=93)
    both = working_set(
        network, sgd, n_samples=100, n_features=5, n_parameters=93, weighted=True, fine_tuning=True
    )
    assert both["dataset_id"] - plain["dataset_id"] == 100 * (8 + 4)  # stored float64, float32
    assert both["network.layers"] - plain["network.layers"] == 93 * 4  # the model started from


def test_dropout_counts_its_masks_and_masked_activations():
    """A layer with dropout keeps two more (batch, units) arrays: its mask and its product."""
    network = {
        "dtype": "float32",
        "layers": [
            {"units": 10, "dropout": 0.5},
            {"units": 7, "dropout": 0.0},
            {"units": 3, "dropout": 0.0},
        ],
    }
    sgd = {"optimizer": {"name": "sgd", "momentum": 0.0}, "early_stopping": None, "batch_size": 10}
    costs = working_set(network, sgd, n_samples=100, n_features=5, n_parameters=107)
    assert costs["training.batch_size"] == 2 * 10 * (20 + 10) * 4
