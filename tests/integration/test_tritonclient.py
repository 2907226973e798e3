"""A stock tritonclient (its HTTP client, unchanged) against /v2 of the real API processes on
both backends: health, metadata, readiness and infer, binary and JSON, equal to /v1 predict."""

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tests.factories import job_body

NAME = "tritonclient-iris"
IRIS_NETWORK = {
    "layers": [{"units": 8, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
}
OUTPUTS = ("predictions", "probabilities")


@pytest.fixture(scope="module")
def iris(stack) -> dict:
    """The built-in iris sample (string labels) trained by a worker as version 1 of NAME; its
    job, and the rows and /v1 predictions the tests compare with."""
    from sklearn.datasets import load_iris  # here: collecting the module costs nothing

    dataset = stack.create("/v1/datasets", 201, json={"builtin": "iris"})
    body = {**job_body(dataset["id"], epochs=100, network=IRIS_NETWORK), "model_name": NAME}
    job = stack.wait_for_job(stack.create("/v1/jobs", 202, json=body)["id"])
    assert job["status"] == "succeeded", job
    rows = load_iris().data[::10]
    v1 = stack.create(
        f"/v1/models/{job['model_id']}/predict", 200, json={"instances": rows.tolist()}
    )
    return {"job": job, "rows": rows, "v1": v1}


@pytest.fixture(scope="module")
def client(stack):
    with triton.InferenceServerClient(url=stack.base_url.removeprefix("http://")) as client:
        yield client


def input_tensor(rows: np.ndarray, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("input", list(rows.shape), np_to_triton_dtype(rows.dtype))
    return tensor.set_data_from_numpy(rows, binary_data=binary)


def assert_equals_v1(result: triton.InferResult, v1: dict, outputs=OUTPUTS) -> None:
    """The outputs tritonclient decoded are /v1's: the same labels, the same float32 numbers."""
    if "predictions" in outputs:
        # tritonclient reads BYTES as bytes from binary data, as str from JSON
        labels = [
            label.decode() if isinstance(label, bytes) else label
            for label in result.as_numpy("predictions").tolist()
        ]
        assert labels == v1["predictions"]
    if "probabilities" in outputs:
        expected = np.array(v1["probabilities"], dtype=np.float32)
        assert np.array_equal(result.as_numpy("probabilities"), expected)


def test_server_is_live_and_ready_and_describes_itself(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "backprop-service"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_and_readiness(client, iris):
    for version in ("", "1"):
        metadata = client.get_model_metadata(NAME, model_version=version)
        (tensor,) = metadata["inputs"]
        assert {key: tensor[key] for key in ("name", "datatype", "shape")} == {
            "name": "input",
            "datatype": "FP32",
            "shape": [-1, 4],
        }
        # MLServer's extension of the metadata, which tritonclient passes through as it is (the
        # built-in sample names no features: they are numbered)
        assert tensor["parameters"] == {"feature_names": ["x0", "x1", "x2", "x3"]}
        assert metadata["outputs"] == [
            {"name": "predictions", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        ]
        assert metadata["versions"] == ["1"]
        assert client.is_model_ready(NAME, model_version=version)
    assert client.is_model_ready(str(iris["job"]["model_id"]))
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready(NAME, model_version="2")


def test_infer_with_the_default_outputs_in_binary(client, iris):
    rows = iris["rows"].astype(np.float32)
    result = client.infer(NAME, [input_tensor(rows)])
    response = result.get_response()
    assert (response["model_name"], response["model_version"]) == (NAME, "1")
    assert all("binary_data_size" in output["parameters"] for output in response["outputs"])
    assert_equals_v1(result, iris["v1"])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", ["predictions", "probabilities"])
def test_infer_with_a_named_output(client, iris, binary, name):
    rows = iris["rows"].astype(np.float32)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary)]
    result = client.infer(NAME, [input_tensor(rows, binary)], outputs=outputs, model_version="1")
    assert [output["name"] for output in result.get_response()["outputs"]] == [name]
    assert_equals_v1(result, iris["v1"], outputs=(name,))


def test_infer_takes_fp64_rows_and_the_models_id(client, iris):
    result = client.infer(str(iris["job"]["model_id"]), [input_tensor(iris["rows"])])
    assert_equals_v1(result, iris["v1"])


def test_infer_by_alias(stack, client, iris):
    response = stack.http.put(
        f"{stack.base_url}/v1/models/{NAME}/aliases/production", json={"version": 1}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert client.is_model_ready(f"{NAME}@production")
    result = client.infer(f"{NAME}@production", [input_tensor(iris["rows"].astype(np.float32))])
    assert result.get_response()["model_version"] == "1"
    assert_equals_v1(result, iris["v1"])


def test_errors_reach_the_client_with_their_status_and_message(client, iris):
    with pytest.raises(InferenceServerException) as raised:
        client.infer(NAME, [input_tensor(np.zeros((2, 3), dtype=np.float32))])
    assert raised.value.status() == "400"
    assert "each row needs 4 features" in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("no-such-model")
    assert raised.value.status() == "404"
    assert "no-such-model" in raised.value.message()
