"""backprop_client against a real stack (both backends, and the one with AUTH=required): the
tour of README.md from Python."""

import json
import secrets
from pathlib import Path

import pytest
from backprop_client import ApiError, Client

from tests.factories import XOR_NETWORK, xor_training
from tests.integration.test_auth_stack import make_key

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
XOR_ROWS = [[0, 0], [0, 1], [1, 0], [1, 1]]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def client(stack) -> Client:
    return Client(stack.base_url)


def test_xor_is_trained_followed_and_served(client):
    name = f"client-xor-{secrets.token_hex(3)}"
    dataset = client.upload_dataset(builtin="xor")
    assert client.dataset(dataset["id"])["rows"] == 4
    job = client.submit_job(dataset["id"], XOR_NETWORK, xor_training(300), model_name=name)
    assert job["status"] == "queued"

    events = list(client.follow(job["id"]))
    epochs = [event.data["epoch"] for event in events if event.type == "epoch"]
    assert epochs == list(range(1, 301))
    statuses = [event.data["status"] for event in events if event.type == "status"]
    assert events[0].type == "status" and statuses[-1] == "succeeded"
    # Followed while it ran, the stream ends with the final status; a job that ended before the
    # stream opened gives that status first, then its epochs (the client's contract).
    assert events[-1].type == "status" or statuses == ["succeeded"]

    finished = client.wait(job["id"], timeout=60)
    assert finished["status"] == "succeeded"
    assert [row["epoch"] for row in client.epochs(job["id"], after=295)] == [
        296,
        297,
        298,
        299,
        300,
    ]
    assert client.predict(name, XOR_ROWS)["predictions"] == [0, 1, 1, 0]
    explained = client.explain(name, XOR_ROWS, method="shapley", target=1, baseline="zeros")
    assert [list(row["attributions"]) for row in explained["explanations"]] == [["x0", "x1"]] * 4
    layers = client.weights(name)["layers"]
    assert [(len(layer["W"]), len(layer["b"]), layer["activation"]) for layer in layers] == [
        (2, 4, "tanh"),
        (4, 2, "softmax"),
    ]

    client.set_alias(name, "production", 1)
    assert client.model(f"{name}@production")["id"] == finished["model_id"]
    assert client.predict(f"{name}@production", XOR_ROWS)["model_id"] == finished["model_id"]
    assert finished["model_id"] in {model["id"] for model in client.models()}
    assert job["id"] in {row["id"] for row in client.jobs()}
    assert client.loss_plot(job["id"], log=True).startswith(PNG_SIGNATURE)
    assert client.loss_plot(job["id"], format="svg").lstrip().startswith(b"<")


def test_a_bad_spec_is_an_api_error_naming_the_field(client):
    dataset = client.upload_dataset(builtin="xor")
    network = {
        "layers": [{"units": 4, "activation": "tanh"}, {"units": 0, "activation": "softmax"}]
    }
    with pytest.raises(ApiError) as raised:
        client.submit_job(dataset["id"], network, xor_training())
    assert (raised.value.status, raised.value.code) == (422, "unprocessable_entity")
    assert "network.layers[1].units" in raised.value.details
    assert str(raised.value).startswith("422 unprocessable_entity: network.layers[1].units: ")
    with pytest.raises(ApiError) as missing:
        client.job(2_000_000_000)
    assert missing.value.status == 404


def test_a_cancelled_job_is_waited_for(client):
    dataset = client.upload_dataset(builtin="xor")
    job = client.submit_job(dataset["id"], XOR_NETWORK, xor_training(10_000_000))
    assert client.cancel(job["id"])["id"] == job["id"]
    assert client.wait(job["id"], timeout=60)["status"] == "cancelled"
    endless = client.submit_job(dataset["id"], XOR_NETWORK, xor_training(10_000_000))["id"]
    try:
        with pytest.raises(TimeoutError):
            client.wait(endless, timeout=0)
    finally:  # the stack is shared: leave no worker busy for the tests after this one
        client.cancel(endless)
        assert client.wait(endless, timeout=60)["status"] == "cancelled"


def test_files_and_arrays_are_uploaded(client):
    csv = client.upload_dataset(
        path=EXAMPLES / "iris.csv", task="regression", target="petal_width", drop=["species"]
    )
    assert (csv["source"], csv["features"], csv["target_names"]) == ("csv", 3, ["petal_width"])
    npz = client.upload_dataset(path=EXAMPLES / "iris.npz", task="classification")
    assert (npz["source"], npz["rows"]) == ("npz", 150)
    arrays = client.upload_dataset(features=XOR_ROWS, targets=[0, 1, 1, 0], task="classification")
    assert (arrays["source"], arrays["classes"]) == ("json", [0, 1])


def test_every_page_of_a_listing_is_read(client, stack, monkeypatch):
    monkeypatch.setattr("backprop_client.client.PAGE_SIZE", 2)
    uploaded = {client.upload_dataset(builtin="xor")["id"] for _ in range(5)}
    listed = [dataset["id"] for dataset in client.datasets()]
    total = json.loads(stack.get("/v1/datasets").headers["X-Pagination"])["total"]
    assert len(listed) == len(set(listed)) == total
    assert uploaded <= set(listed)


def test_with_auth_required_the_key_is_sent(secured, monkeypatch):
    monkeypatch.delenv("BACKPROP_API_KEY", raising=False)
    stack, env = secured
    client = Client(stack.base_url, api_key=make_key(env, "client"))
    dataset = client.upload_dataset(builtin="xor")
    assert [row["id"] for row in client.datasets()] == [dataset["id"]]
    with pytest.raises(ApiError) as refused:
        Client(stack.base_url, api_key="").datasets()
    assert refused.value.status == 401
