"""GET /v1/models/{ref}/export: an ONNX file that onnxruntime runs to /predict's numbers, or
the npz weights."""

import numpy as np
import onnxruntime
import pytest

from tests.factories import assert_envelope, job_body
from worker.training import run_training

ROWS = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.3, 0.8]]


@pytest.fixture
def xor_model(client, sessions, settings) -> str:
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    body = {**job_body(dataset_id, epochs=300), "model_name": "xor"}
    job_id = client.post("/v1/jobs", json=body).get_json()["id"]
    run_training(sessions, job_id, settings)
    assert client.put("/v1/models/xor/aliases/live", json={"version": 1}).status_code == 200
    return "xor@live"


def test_onnx_export_runs_to_the_predicted_numbers(client, xor_model):
    response = client.get(f"/v1/models/{xor_model}/export?format=onnx")
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    assert response.headers["X-Model-Name"] == "xor"
    assert response.headers["Content-Disposition"].endswith('.onnx"')
    session = onnxruntime.InferenceSession(response.data, providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(
        ["probabilities", "predictions"], {"input": np.asarray(ROWS, np.float32)}
    )
    predicted = client.post(f"/v1/models/{xor_model}/predict", json={"instances": ROWS})
    expected = predicted.get_json()
    np.testing.assert_allclose(probabilities, expected["probabilities"], rtol=0, atol=1e-5)
    assert labels.tolist() == expected["predictions"]


def test_onnx_is_the_default_and_npz_gives_the_weights_file(client, xor_model):
    assert client.get(f"/v1/models/{xor_model}/export").data.startswith(b"\x08")
    npz = client.get(f"/v1/models/{xor_model}/export?format=npz")
    assert npz.data == client.get(f"/v1/models/{xor_model}/weights?format=npz").data


def test_bad_format_and_unknown_model(client, xor_model):
    assert_envelope(client.get(f"/v1/models/{xor_model}/export?format=pmml"), 422, "format")
    assert_envelope(client.get("/v1/models/nothing/export"), 404)


def test_the_openapi_document_says_it_is_a_file(client):
    spec = client.get("/openapi.json").get_json()
    ok = spec["paths"]["/v1/models/{ref}/export"]["get"]["responses"]["200"]
    assert set(ok["content"]) == {"application/octet-stream"}
