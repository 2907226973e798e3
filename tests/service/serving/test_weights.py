"""/v1/models/{id}/weights carry all a forward pass needs: the forward pass in docs/api.md, run
as it is written on the JSON document and on the npz file, gives what /predict gives."""

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from model_core import Model
from model_core.activations import ACTIVATIONS
from service.serving.predictions import weights_as_arrays
from tests.factories import job_body
from worker.training import run_training

API_DOCS = Path(__file__).resolve().parents[3] / "docs" / "api.md"
FORWARD_PASS_BLOCK = re.compile(
    r"^<!-- forward pass: tests/service/serving/test_weights.py runs the next block as it is -->\n"
    r"```python\n(.*?)^```",
    re.MULTILINE | re.DOTALL,
)

RNG = np.random.default_rng(8)
# Raw features far from mean 0 and scale 1, so that leaving out the standardisation shows.
REGRESSION_X = RNG.uniform([100.0, -50.0, 0.0], [1000.0, 50.0, 1.0], size=(60, 3))
REGRESSION_Y = np.column_stack(
    [
        REGRESSION_X @ [0.01, 0.2, 3.0] + 5.0,
        np.sin(3.0 * REGRESSION_X[:, 2]) - 0.002 * REGRESSION_X[:, 0],
    ]
)
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 5.1, 1.8]]
XOR_ROWS = [[0, 0], [0, 1], [1, 0], [1, 1]]

CASES = {
    "regression, 2 targets, standardized": (
        {
            "task": "regression",
            "features": REGRESSION_X.tolist(),
            "targets": REGRESSION_Y.tolist(),
        },
        [{"units": 8, "activation": "leaky_relu"}, {"units": 2, "activation": "linear"}],
        {"standardize": True},
        REGRESSION_X[:10].tolist(),
    ),
    "iris, string classes, softmax": (
        {"builtin": "iris"},
        [{"units": 6, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
        {"standardize": True},
        IRIS_ROWS,
    ),
    "xor, one sigmoid unit, not standardized": (
        {"builtin": "xor"},
        [{"units": 4, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
        {"standardize": False},
        XOR_ROWS,
    ),
}


@pytest.fixture(scope="module")
def documented() -> dict:
    """The names that the forward-pass block of docs/api.md defines, run exactly as written."""
    block = FORWARD_PASS_BLOCK.search(API_DOCS.read_text())
    assert block, f"{API_DOCS} lost its forward-pass block"
    names: dict = {}
    exec(block.group(1), names)
    return names


@dataclass(frozen=True)
class Trained:
    model_id: int
    rows: list
    standardized: bool


@pytest.fixture(params=list(CASES), ids=list(CASES))
def trained(request, client, sessions) -> Trained:
    """A model of one of the CASES, trained by the worker's own function, and rows for it."""
    dataset, layers, training, rows = CASES[request.param]
    dataset_id = client.post("/v1/datasets", json=dataset).get_json()["id"]
    body = job_body(dataset_id, epochs=60, network={"layers": layers})
    body["training"].update(training)
    job_id = client.post("/v1/jobs", json=body).get_json()["id"]
    run_training(sessions, job_id)
    model_id = client.get(f"/v1/jobs/{job_id}").get_json()["model_id"]
    return Trained(model_id, rows, training["standardize"])


def both_weights(client, model_id: int, documented: dict) -> tuple[dict, dict]:
    """The JSON document, and the npz file as the docs' ``read_npz`` reads it."""
    as_json = client.get(f"/v1/models/{model_id}/weights").get_json()
    npz = client.get(f"/v1/models/{model_id}/weights?format=npz").data
    return as_json, documented["read_npz"](io.BytesIO(npz))


def test_the_documented_forward_pass_gives_the_predictions(client, trained, documented):
    rows = trained.rows
    served = client.post(f"/v1/models/{trained.model_id}/predict", json={"instances": rows})
    served = served.get_json()
    for weights in both_weights(client, trained.model_id, documented):
        predictions = documented["predict"](weights, rows)
        if weights["task"] == "regression":
            np.testing.assert_allclose(predictions, served["predictions"], rtol=1e-5)
            continue
        assert predictions.tolist() == served["predictions"]
        # The last output unit is the last class's probability, for softmax and one sigmoid.
        outputs = documented["forward"](weights, rows)
        np.testing.assert_allclose(
            outputs[:, -1], np.asarray(served["probabilities"])[:, -1], rtol=1e-5
        )


def test_json_and_npz_weights_are_the_same_arrays(client, trained, documented):
    as_json, from_npz = both_weights(client, trained.model_id, documented)
    assert set(as_json) == {"task", "dtype", "layers", "standardization", "classes"}
    dtype = np.dtype(as_json["dtype"])
    assert (from_npz["task"], from_npz["dtype"]) == (as_json["task"], as_json["dtype"])
    for json_layer, npz_layer in zip(as_json["layers"], from_npz["layers"], strict=True):
        assert json_layer["activation"] == npz_layer["activation"]
        for name in ("W", "b"):
            assert npz_layer[name].dtype == dtype
            assert np.array_equal(np.asarray(json_layer[name], dtype), npz_layer[name])
    if as_json["standardization"] is None:
        assert from_npz["standardization"] is None
    else:
        for name in ("mean", "scale"):
            json_values = np.asarray(as_json["standardization"][name], dtype)
            assert np.array_equal(json_values, from_npz["standardization"][name])
    classes = from_npz["classes"]
    assert as_json["classes"] == (None if classes is None else classes.tolist())


def test_every_npz_member_is_a_plain_array(client, trained):
    response = client.get(f"/v1/models/{trained.model_id}/weights?format=npz")
    with np.load(io.BytesIO(response.data), allow_pickle=False) as npz:
        arrays = dict(npz)
    assert all(array.dtype.kind in "biufU" for array in arrays.values())
    spec = arrays["spec"]
    assert (spec.shape, spec.dtype.kind) == ((), "U")
    assert set(json.loads(str(spec))) == {"task", "dtype", "layers", "standardized"}


def test_the_model_shows_the_standardization_of_its_weights(client, trained):
    shown = client.get(f"/v1/models/{trained.model_id}").get_json()
    weights = client.get(f"/v1/models/{trained.model_id}/weights").get_json()
    assert shown["standardization"] == weights["standardization"]
    assert shown["classes"] == weights["classes"]


def test_leaving_out_the_standardization_gives_other_numbers(client, trained, documented):
    """The issue's symptom, which the weights without mean and scale could not avoid."""
    weights = client.get(f"/v1/models/{trained.model_id}/weights").get_json()
    assert (weights["standardization"] is not None) == trained.standardized
    if trained.standardized:
        raw_rows_as_they_are = {**weights, "standardization": None}
        outputs = documented["forward"](weights, trained.rows)
        assert not np.allclose(documented["forward"](raw_rows_as_they_are, trained.rows), outputs)


def test_the_documented_activations_are_model_cores(documented):
    z = np.linspace(-30.0, 30.0, 60).reshape(-1, 3)
    assert set(documented["ACTIVATIONS"]) == set(ACTIVATIONS)
    for name, activation in ACTIVATIONS.items():
        expected = z.copy()
        activation.forward(expected)
        np.testing.assert_allclose(
            documented["ACTIVATIONS"][name](z), expected, rtol=1e-12, err_msg=name
        )


def test_the_openapi_document_describes_both_forms(client):
    spec = client.get("/openapi.json").get_json()
    ok = spec["paths"]["/v1/models/{ref}/weights"]["get"]["responses"]["200"]
    assert set(ok["content"]) == {"application/json", "application/octet-stream"}
    schemas = spec["components"]["schemas"]
    assert set(schemas["Weights"]["properties"]) == {
        "task",
        "dtype",
        "layers",
        "standardization",
        "classes",
    }
    assert set(schemas["LayerWeights"]["properties"]) == {"W", "b", "activation"}
    assert "standardization" in schemas["ModelDetail"]["properties"]
    assert "standardization" not in schemas["Model"]["properties"]


def test_classes_that_would_need_pickle_are_refused():
    network = {"dtype": "float32", "layers": [{"units": 2, "activation": "softmax"}]}
    weights = [(np.zeros((3, 2), np.float32), np.zeros(2, np.float32))]
    model = Model(network, weights, "classification", classes=[0, None])
    with pytest.raises(ValueError, match="pickle"):
        weights_as_arrays(model)
