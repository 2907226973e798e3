"""The Open Inference Protocol (KServe v2): the codec against tritonclient's own encoder and
decoder, then /v2 through Flask's test client, every error as the protocol's {"error": "..."}."""

import json

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import np_to_triton_dtype

from model_core import Model
from service.api import bodies
from service.api.app import create_app
from service.serving import inference_protocol as protocol
from service.serving.inference_protocol import ProtocolError
from service.serving.predictions import prediction_arrays
from service.settings import Settings
from tests.factories import job_body
from tests.service.conftest import MAX_REQUEST_BYTES
from worker.training import run_training

XOR_ROWS = [[0, 0], [0, 1], [1, 0], [1, 1]]
MAX_ROWS = 50


def make_model(
    task: str = "classification",
    classes: list | None = None,
    dtype: str = "float32",
    n_features: int = 3,
    n_outputs: int = 2,
) -> Model:
    """A small network with random weights, standardized, as training would leave it."""
    rng = np.random.default_rng(7)
    classes = classes if classes is not None or task != "classification" else [0, 1]
    units = len(classes) if task == "classification" else n_outputs
    last = "softmax" if task == "classification" else "linear"
    layers = [{"units": 5, "activation": "tanh"}, {"units": units, "activation": last}]
    weights = [
        (rng.normal(size=(n_features, 5)).astype(dtype), rng.normal(size=5).astype(dtype)),
        (rng.normal(size=(5, units)).astype(dtype), rng.normal(size=units).astype(dtype)),
    ]
    mean = rng.normal(size=n_features).astype(dtype)
    scale = rng.uniform(0.5, 2, size=n_features).astype(dtype)
    network = {"dtype": dtype, "layers": layers}
    target_ndim = 1 if n_outputs == 1 else 2
    return Model(network, weights, task, classes, mean, scale, target_ndim)


def triton_input(rows: np.ndarray, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("input", list(rows.shape), np_to_triton_dtype(rows.dtype))
    return tensor.set_data_from_numpy(rows, binary_data=binary)


def round_trip(model: Model, inputs: list, outputs: list | None = None) -> triton.InferResult:
    """What tritonclient reads back from our answer to what it sends."""
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs, outputs)
    header_length = None if json_size is None else str(json_size)
    request = protocol.parse_infer_request(body, header_length, model, MAX_ROWS)
    answer, length = protocol.encode_infer_response(
        request,
        protocol.infer_outputs(model, prediction_arrays(model, request.x, 2**20, "input")),
        protocol.output_specs(model),
        "m",
        "1",
    )
    body = b"".join(answer)
    return triton.InferenceServerClient.parse_response_body(body, header_length=length)


def rows_for(model: Model, n: int = 4, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(n, model.n_features)).astype(dtype)


# The codec


def test_metadata_of_a_classifier_with_integer_labels():
    metadata = protocol.model_metadata(make_model(), "digits", "3", ["a", "b", "c"])
    assert metadata == {
        "name": "digits",
        "versions": ["3"],
        "platform": protocol.PLATFORM,
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [-1, 3],
                "parameters": {"feature_names": ["a", "b", "c"]},
            }
        ],
        "outputs": [
            {"name": "predictions", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
        ],
    }


def test_metadata_of_string_labels_a_float64_model_and_a_regression():
    model = make_model(classes=["cat", "dog", "eel"], dtype="float64")
    words = protocol.model_metadata(model, "7", None, ["x0", "x1", "x2"])
    assert "versions" not in words
    assert words["inputs"] == [
        {
            "name": "input",
            "datatype": "FP64",
            "shape": [-1, 3],
            "parameters": {"feature_names": ["x0", "x1", "x2"]},
        }
    ]
    assert [(o["name"], o["datatype"], o["shape"]) for o in words["outputs"]] == [
        ("predictions", "BYTES", [-1]),
        ("probabilities", "FP64", [-1, 3]),
    ]
    regression = protocol.model_metadata(make_model("regression", n_outputs=2), "r", "1", ["u"])
    assert regression["outputs"] == [{"name": "predictions", "datatype": "FP32", "shape": [-1, 2]}]


def test_binary_round_trip_gives_model_cores_numbers():
    model = make_model()
    rows = rows_for(model)
    result = round_trip(model, [triton_input(rows)])
    labels, probabilities = model.predict_with_proba(rows)
    assert result.get_response()["model_name"] == "m"
    assert result.as_numpy("predictions").dtype == np.int64
    assert np.array_equal(result.as_numpy("predictions"), labels)
    assert np.array_equal(result.as_numpy("probabilities"), probabilities)
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])


def test_binary_rows_are_a_view_of_the_body_not_a_copy():
    model = make_model()
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [triton_input(rows_for(model))]
    )
    buffer = bytearray(body)
    request = protocol.parse_infer_request(memoryview(buffer), str(json_size), model, MAX_ROWS)
    assert np.shares_memory(request.x, np.frombuffer(buffer, np.uint8))
    assert np.array_equal(request.x, rows_for(model))


def test_json_round_trip_of_named_outputs():
    model = make_model()
    rows = rows_for(model)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    result = round_trip(model, [triton_input(rows, binary=False)], outputs)
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["probabilities"]
    assert "data" in response["outputs"][0]
    assert np.array_equal(result.as_numpy("probabilities"), model.predict_proba(rows))


def test_outputs_mix_binary_and_json():
    model = make_model()
    outputs = [
        triton.InferRequestedOutput("predictions", binary_data=False),
        triton.InferRequestedOutput("probabilities", binary_data=True),
    ]
    rows = rows_for(model)
    result = round_trip(model, [triton_input(rows)], outputs)
    assert np.array_equal(result.as_numpy("predictions"), model.predict(rows))
    assert np.array_equal(result.as_numpy("probabilities"), model.predict_proba(rows))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_string_labels_travel_as_bytes(binary):
    model = make_model(classes=["cat", "dog", "eel"])
    rows = rows_for(model, 6)
    outputs = [triton.InferRequestedOutput("predictions", binary_data=binary)]
    labels = round_trip(model, [triton_input(rows)], outputs).as_numpy("predictions")
    expected = model.predict(rows)
    assert [label.decode() if binary else label for label in labels.tolist()] == expected.tolist()


def test_fp64_rows_for_a_float32_model_and_fp32_rows_for_a_float64_one():
    model32, model64 = make_model(), make_model(dtype="float64")
    rows = rows_for(model32, dtype=np.float64)
    result = round_trip(model32, [triton_input(rows)])
    assert np.array_equal(result.as_numpy("probabilities"), model32.predict_proba(rows))
    rows32 = rows.astype(np.float32)
    result = round_trip(model64, [triton_input(rows32)])
    assert result.as_numpy("probabilities").dtype == np.float64
    assert np.array_equal(result.as_numpy("probabilities"), model64.predict_proba(rows32))


def test_a_regression_answers_one_column_per_target():
    single, double = make_model("regression", n_outputs=1), make_model("regression", n_outputs=2)
    rows = rows_for(single)
    result = round_trip(single, [triton_input(rows)])
    assert result.as_numpy("predictions").shape == (4, 1)
    assert np.array_equal(result.as_numpy("predictions")[:, 0], single.predict(rows))
    assert round_trip(double, [triton_input(rows)]).as_numpy("predictions").shape == (4, 2)


def test_nested_json_data_and_the_request_id_are_accepted():
    model = make_model()
    body = {
        "id": "r-1",
        "inputs": [
            {"name": "input", "shape": [2, 3], "datatype": "FP64", "data": [[1, 2, 3], [4, 5, 6]]}
        ],
    }
    request = protocol.parse_infer_request(json.dumps(body).encode(), None, model, MAX_ROWS)
    assert request.request_id == "r-1"
    assert request.x.dtype == np.float32 and request.x.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert [(o.name, o.binary) for o in request.outputs] == [
        ("predictions", False),
        ("probabilities", False),
    ]


def json_request(**input_fields) -> dict:
    tensor = {"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
    return {"inputs": [{**tensor, **input_fields}]}


def with_outputs(*outputs: dict) -> dict:
    return {**json_request(shape=[1, 2], data=[1, 2]), "outputs": list(outputs)}


FLOATS = np.arange(6, dtype="<f4").tobytes()


def binary_body(size: int = 24, shape=(2, 3), extra: bytes = b"") -> tuple[bytes, str]:
    tensor = {"name": "input", "shape": list(shape), "datatype": "FP32"}
    tensor["parameters"] = {"binary_data_size": size}
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + FLOATS + extra, str(len(header))


BAD_REQUESTS = {
    "not JSON": (b"{inputs", None, "must be a JSON inference request"),
    "not an object": (b"[1]", None, "must be a JSON object"),
    "no inputs": (b"{}", None, "inputs must be a list"),
    "wrong input name": (json_request(name="x"), None, "one tensor named 'input'"),
    "two inputs": ({"inputs": json_request()["inputs"] * 2}, None, "one tensor named 'input'"),
    "INT64": (json_request(datatype="INT64"), None, 'datatype "INT64" is not accepted'),
    "BYTES": (json_request(datatype="BYTES"), None, "send FP32 or FP64"),
    "shape not a list": (json_request(shape="1x3"), None, "shape must be a list"),
    "negative shape": (json_request(shape=[-1, 3]), None, "shape must be a list of non-negative"),
    "shape disagrees with data": (json_request(shape=[2, 3]), None, "holds 6 values; data has 3"),
    "wrong feature count": (json_request(), None, "each row needs 2 features; shape [1, 3] has 3"),
    "1-D": (json_request(shape=[3]), None, "must be [rows, 2] (2-D)"),
    "no rows": (json_request(shape=[0, 2], data=[]), None, "has 0 rows; send 1 to 50"),
    "too many rows": (json_request(shape=[51, 2], data=[0] * 102), None, "has 51 rows"),
    "strings in data": (json_request(shape=[1, 2], data=["1", "2"]), None, "numbers only"),
    "booleans in data": (json_request(shape=[1, 2], data=[True, False]), None, "numbers only"),
    "ragged data": (json_request(shape=[2, 2], data=[[1, 2], [3]]), None, "nested evenly"),
    "no data": (json_request(data=None), None, "data must be a list"),
    "NaN": (json_request(shape=[1, 2], data=[1, float("nan")]), None, "NaN at row 0, column 1"),
    "unknown output": (with_outputs({"name": "labels"}), None, 'unknown output "labels"'),
    "output name a list": (with_outputs({"name": []}), None, "unknown output []"),
    "an output named twice": (
        with_outputs({"name": "predictions"}, {"name": "predictions"}),
        None,
        "'predictions' is requested 2 times",
    ),
    "more outputs than the model has": (
        with_outputs(*[{"name": "probabilities"}] * 2000),
        None,
        "2000 requested; this model has 2",
    ),
    "datatype a list": (json_request(datatype=["FP32"]), None, 'datatype ["FP32"] is not'),
    "classification parameter": (
        with_outputs({"name": "probabilities", "parameters": {"classification": 2}}),
        None,
        "classification is not supported",
    ),
    "binary_data not a boolean": (
        with_outputs({"name": "predictions", "parameters": {"binary_data": 1}}),
        None,
        "binary_data must be true or false",
    ),
    "binary_data_output not a boolean": (
        {**json_request(shape=[1, 2], data=[1, 2]), "parameters": {"binary_data_output": "yes"}},
        None,
        "binary_data_output must be true or false",
    ),
    "header length not a number": (*binary_body()[:1], "12a", "must be a number of bytes"),
    "header length a unicode digit": (*binary_body()[:1], "\u00b2", "must be a number of bytes"),
    "header length past the body": (binary_body()[0], "100000", "the body has only"),
    "header length of 5,000 digits": (binary_body()[0], "9" * 5000, "5000 characters"),
    "nested 1,000 deep": (b"[" * 1000 + b"]" * 1000, None, "nests 1000 levels deep"),
    "header nested 1,000 deep": (
        b"[" * 1000 + b"]" * 1000 + FLOATS,
        "2000",
        "nests 1000 levels deep",
    ),
    "binary size disagrees with the shape": (*binary_body(shape=(3, 3)), "needs 36 bytes"),
    "binary size disagrees with the bytes": (*binary_body(size=20), "follow the JSON header"),
    "bytes without binary_data_size": (
        json.dumps(json_request(shape=[1, 2], data=[1, 2])).encode() + FLOATS,
        str(len(json.dumps(json_request(shape=[1, 2], data=[1, 2])))),
        "has no parameters.binary_data_size",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_requests_raise_an_error_naming_what_is_wrong(case):
    body, header_length, expected = BAD_REQUESTS[case]
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    with pytest.raises(ProtocolError) as raised:
        protocol.parse_infer_request(body, header_length, make_model(n_features=2), MAX_ROWS)
    assert expected in str(raised.value)


# /v2 over HTTP


@pytest.fixture
def model_id(client, sessions) -> int:
    """XOR trained by the worker's own function, registered as the name ``xor`` (version 1)."""
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    body = {**job_body(dataset_id, epochs=500), "model_name": "xor"}
    job_id = client.post("/v1/jobs", json=body).get_json()["id"]
    run_training(sessions, job_id)
    return client.get(f"/v1/jobs/{job_id}").get_json()["model_id"]


def assert_protocol_error(response, status: int, *words: str) -> str:
    """The response is ``status`` with exactly ``{"error": "..."}`` mentioning ``words``."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    for word in words:
        assert word in body["error"], body
    return body["error"]


def infer_binary(client, path: str, rows: np.ndarray, outputs=None):
    """POST what tritonclient sends (no Content-Type) and decode the answer as it does."""
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [triton_input(rows)], outputs
    )
    headers = {} if json_size is None else {protocol.HEADER_LENGTH: str(json_size)}
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    length = response.headers.get(protocol.HEADER_LENGTH)
    result = triton.InferenceServerClient.parse_response_body(
        response.data, header_length=None if length is None else int(length)
    )
    return response, result


def test_live_ready_and_server_metadata(client):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    metadata = client.get("/v2").get_json()
    assert metadata["name"] == "backprop-service"
    assert metadata["extensions"] == ["binary_tensor_data"]


def test_ready_is_503_when_the_database_is_down(settings):
    down = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nothing",
        broker_url=settings.broker_url,
    )
    response = create_app(down).test_client().get("/v2/health/ready")
    assert_protocol_error(response, 503, "database")


@pytest.mark.parametrize("ref", ["{id}", "xor", "xor/versions/1"])
def test_model_metadata_and_ready_by_id_name_and_version(client, model_id, ref):
    path = "/v2/models/" + ref.format(id=model_id)
    metadata = client.get(path)
    shown = metadata.get_json()
    assert shown["inputs"] == [
        {
            "name": "input",
            "datatype": "FP32",
            "shape": [-1, 2],
            "parameters": {"feature_names": ["x0", "x1"]},
        }
    ]
    assert (shown["name"], shown["versions"]) == ("xor", ["1"])
    ready = client.get(path + "/ready")
    assert ready.get_json() == {"name": "xor", "ready": True}
    for response in (metadata, ready):
        assert response.headers["X-Model-Id"] == str(model_id)
        assert response.headers["X-Model-Name"] == "xor"
        assert response.headers["X-Model-Version"] == "1"


def test_infer_in_binary_equals_v1_predict(client, model_id):
    rows = np.array(XOR_ROWS, dtype=np.float32)
    response, result = infer_binary(client, "/v2/models/xor/infer", rows)
    assert response.mimetype == "application/octet-stream"
    assert response.headers["X-Model-Id"] == str(model_id)
    assert result.get_response()["model_name"] == "xor"
    assert result.get_response()["model_version"] == "1"
    v1 = client.post(f"/v1/models/{model_id}/predict", json={"instances": XOR_ROWS}).get_json()
    assert result.as_numpy("predictions").tolist() == v1["predictions"] == [0, 1, 1, 0]
    assert np.array_equal(
        result.as_numpy("probabilities"), np.array(v1["probabilities"], dtype=np.float32)
    )


def test_a_binary_body_read_in_many_pieces_answers_the_same(client, model_id, monkeypatch):
    """The body is read into one buffer in reads of ``BODY_READ_BYTES``; the answer is sent in
    pieces (header, then each output) with their total length."""
    rows = np.array(XOR_ROWS, dtype=np.float32)
    _, whole = infer_binary(client, "/v2/models/xor/infer", rows)
    monkeypatch.setattr(bodies, "BODY_READ_BYTES", 5)
    response, pieces = infer_binary(client, "/v2/models/xor/infer", rows)
    assert int(response.headers["Content-Length"]) == len(response.data)
    for name in ("predictions", "probabilities"):
        assert np.array_equal(pieces.as_numpy(name), whole.as_numpy(name))


def test_a_binary_body_over_max_request_bytes_is_a_413(client, model_id):
    rows = np.zeros((MAX_REQUEST_BYTES // 8 + 1, 2), dtype=np.float32)
    body, json_size = triton.InferenceServerClient.generate_request_body([triton_input(rows)])
    response = client.post(
        "/v2/models/xor/infer", data=body, headers={protocol.HEADER_LENGTH: str(json_size)}
    )
    assert_protocol_error(response, 413)


def test_infer_in_json_with_a_content_type_and_a_version(client, model_id):
    body = {
        "inputs": [{"name": "input", "shape": [4, 2], "datatype": "FP64", "data": XOR_ROWS}],
        "outputs": [{"name": "predictions"}],
    }
    response = client.post("/v2/models/xor/versions/1/infer", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert protocol.HEADER_LENGTH not in response.headers
    assert response.get_json()["outputs"] == [
        {"name": "predictions", "datatype": "INT64", "shape": [4], "data": [0, 1, 1, 0]}
    ]


def test_infer_by_alias(client, model_id):
    assert client.put("/v1/models/xor/aliases/production", json={"version": 1}).status_code == 200
    rows = np.array(XOR_ROWS, dtype=np.float32)
    response, result = infer_binary(client, "/v2/models/xor@production/infer", rows)
    assert response.headers["X-Model-Version"] == "1"
    assert result.as_numpy("predictions").tolist() == [0, 1, 1, 0]


def test_infer_by_id(client, model_id):
    rows = np.array(XOR_ROWS, dtype=np.float64)
    _, result = infer_binary(client, f"/v2/models/{model_id}/infer", rows)
    assert result.as_numpy("predictions").tolist() == [0, 1, 1, 0]


def test_bad_tensors_are_400_naming_the_problem(client, model_id):
    body = json.dumps(json_request(shape=[1, 3], data=[1, 2, 3]))
    response = client.post("/v2/models/xor/infer", data=body)
    assert_protocol_error(response, 400, "input 'input'", "needs 2 features")
    body, header_length = binary_body(size=20)
    response = client.post(
        "/v2/models/xor/infer", data=body, headers={protocol.HEADER_LENGTH: header_length}
    )
    assert_protocol_error(response, 400, "binary_data_size is 20")
    response = client.post(
        "/v2/models/xor/infer", data=body, headers={protocol.HEADER_LENGTH: "9" * 5000}
    )
    assert_protocol_error(response, 400, protocol.HEADER_LENGTH, "at most 18 digits")
    repeated = {
        **json_request(shape=[1, 2], data=[0, 1]),
        "outputs": [{"name": "probabilities"}] * 2000,
    }
    response = client.post("/v2/models/xor/infer", json=repeated)
    assert_protocol_error(response, 400, "outputs", "2000 requested")


BAD_REFS = {
    "/v2/models/nothing": "nothing",
    "/v2/models/nothing/ready": "nothing",
    "/v2/models/nothing/infer": "nothing",
    "/v2/models/xor/versions/9": "xor:9",
    "/v2/models/999/ready": "999",
    "/v2/models/xor@production/infer": "xor@production",
    "/v2/models/Not%20A%20Ref": "Not A Ref",
    "/v2/models/xor/versions/one/ready": "xor:one",
}


@pytest.mark.parametrize("path", BAD_REFS, ids=list(BAD_REFS))
def test_a_reference_to_no_model_is_404_naming_it(client, model_id, path):
    method = client.post if path.endswith("/infer") else client.get
    assert_protocol_error(method(path, data=b"{}"), 404, BAD_REFS[path])


def test_framework_errors_under_v2_use_the_protocols_body(client, model_id, app):
    assert_protocol_error(client.get("/v2/nothing"), 404)
    assert_protocol_error(client.post("/v2/health/live"), 405)
    assert_protocol_error(client.get("/v2/models/xor/infer"), 405)
    too_big = b"0" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    assert_protocol_error(client.post("/v2/models/xor/infer", data=too_big), 413, "bytes")
    assert_protocol_error(client.post("/v2/models/nothing/infer", data=too_big), 413, "bytes")


def test_an_unexpected_failure_is_500_with_the_protocols_body(client, model_id, app, monkeypatch):
    def broken(*_):
        raise RuntimeError("boom")

    monkeypatch.setattr(protocol, "infer_outputs", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    rows = json.dumps(json_request(shape=[1, 2], data=[0, 1]))
    assert_protocol_error(client.post("/v2/models/xor/infer", data=rows), 500)


def test_v1_errors_keep_their_envelope(client):
    assert client.get("/v1/nothing").get_json()["error"]["code"] == "not_found"


def test_openapi_documents_v2_with_the_protocols_errors(client):
    spec = client.get("/openapi.json").get_json()
    paths = {
        "/v2": {"get"},
        "/v2/health/live": {"get"},
        "/v2/health/ready": {"get"},
        "/v2/models/{name}": {"get"},
        "/v2/models/{name}/versions/{version}": {"get"},
        "/v2/models/{name}/ready": {"get"},
        "/v2/models/{name}/versions/{version}/ready": {"get"},
        "/v2/models/{name}/infer": {"post"},
        "/v2/models/{name}/versions/{version}/infer": {"post"},
    }
    assert {path: set(spec["paths"][path]) - {"parameters"} for path in paths} == paths
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert set(infer["responses"]["200"]["content"]) == {
        "application/json",
        "application/octet-stream",
    }
    for status in ("400", "404", "413", "default"):
        schema = infer["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ProtocolError"}, status
