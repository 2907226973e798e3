"""One rule for specs: what ``POST /v1/jobs/validate`` accepts trains, and what it refuses the
engine refuses too.

Every combination of task, output activation, output width, loss (given or defaulted) and init
that a request can name goes through the API's dry run; the resolved specs it answers with are
then trained for one epoch by model_core, as the worker trains a stored job.
"""

import itertools

import numpy as np
import pytest

from model_core import SpecError, train
from model_core.activations import ACTIVATIONS
from model_core.initializers import INITIALIZERS
from model_core.losses import LOSSES

RNG = np.random.default_rng(0)
X = RNG.standard_normal((12, 3)).round(3)
DATA = {
    # name: (task, targets, output widths a request may try)
    "three_classes": ("classification", np.array(["a", "b", "c"] * 4), (3, 1)),
    "two_classes": ("classification", np.array([0, 1] * 6), (2, 1)),
    "regression": ("regression", X @ np.array([1.0, -2.0, 0.5]), (1, 2)),
}
LOSS_AND_INIT = list(itertools.product([None, *sorted(LOSSES)], [None, *sorted(INITIALIZERS)]))


@pytest.fixture
def dataset_ids(client) -> dict[str, int]:
    ids = {}
    for name, (task, y, _) in DATA.items():
        body = {"task": task, "features": X.tolist(), "targets": y.tolist()}
        response = client.post("/v1/datasets", json=body)
        assert response.status_code == 201, response.get_json()
        ids[name] = response.get_json()["id"]
    return ids


def network_spec(activation: str, units: int, loss: str | None, init: str | None) -> dict:
    network = {
        "layers": [{"units": 4, "activation": "tanh"}, {"units": units, "activation": activation}]
    }
    if loss is not None:
        network["loss"] = loss
    if init is not None:
        network["init"] = init
    return network


def engine_verdict(name: str, network: dict, training: dict) -> str | None:
    """None when model_core trains the resolved specs for an epoch, else its spec error."""
    task, y, _ = DATA[name]
    try:
        train(X, y, network=network, training={**training, "epochs": 1}, task=task)
    except SpecError as error:
        return str(error)
    return None


@pytest.mark.parametrize("name", sorted(DATA))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_the_api_and_the_engine_agree(client, dataset_ids, name, activation):
    """Each output width, loss (or none) and init (or none) with this output activation."""
    for units, (loss, init) in itertools.product(DATA[name][2], LOSS_AND_INIT):
        network = network_spec(activation, units, loss, init)
        body = {"dataset_id": dataset_ids[name], "network": network, "training": {"epochs": 1}}
        report = client.post("/v1/jobs/validate", json=body).get_json()
        if report["valid"]:
            assert engine_verdict(name, report["network"], report["training"]) is None, network
        else:
            refused = engine_verdict(name, network, body["training"])
            assert refused is not None, (network, report["errors"])


def test_a_regression_softmax_without_a_loss_is_refused_before_queuing(client, dataset_ids):
    """The newcomer's case: the defaulted cross_entropy was never checked against the task."""
    network = {"layers": [{"units": 1, "activation": "softmax"}]}
    body = {"dataset_id": dataset_ids["regression"], "network": network}
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert not report["valid"]
    assert (
        "cross_entropy (the default after a softmax output)" in report["errors"]["network.loss"][0]
    )
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert "network.loss" in response.get_json()["error"]["details"]
