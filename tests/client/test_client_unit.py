"""The client without a server: its defaults, how it reads errors and event streams, how
follow() resumes, and that importing it loads nothing of the service's stack."""

import json
import subprocess
import sys

import pytest
import requests
from backprop_client import ApiError, Client, Event
from backprop_client.events import parse_events


def response(status: int, body: bytes, reason: str = "") -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer.reason = reason
    answer._content = body
    return answer


def test_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("BACKPROP_URL", "http://api.example:9000/")
    monkeypatch.setenv("BACKPROP_API_KEY", "bp_secret")
    client = Client()
    assert client.base_url == "http://api.example:9000"
    assert client.http.headers["Authorization"] == "Bearer bp_secret"


def test_without_a_key_no_authorization_is_sent(monkeypatch):
    monkeypatch.delenv("BACKPROP_URL", raising=False)
    monkeypatch.delenv("BACKPROP_API_KEY", raising=False)
    client = Client()
    assert client.base_url == "http://127.0.0.1:8000"
    assert "Authorization" not in client.http.headers


def test_arguments_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("BACKPROP_URL", "http://elsewhere:1")
    monkeypatch.setenv("BACKPROP_API_KEY", "from_env")
    client = Client("http://here:2", api_key="given", timeout=5)
    assert (client.base_url, client.timeout) == ("http://here:2", 5)
    assert client.http.headers["Authorization"] == "Bearer given"


def test_row_weights_are_sent_as_the_api_names_them(monkeypatch, tmp_path):
    sent = []

    def request(method, path, **kwargs):
        sent.append(kwargs)
        return response(201, b"{}")

    client = Client("http://here:2")
    monkeypatch.setattr(client, "_request", request)
    client.upload_dataset(
        features=[[0.0], [1.0]], targets=[0, 1], task="classification", sample_weights=(1, 2.5)
    )
    (tmp_path / "rows.csv").write_text("x,w,y\n0,1,0\n1,2,1\n")
    client.upload_dataset(path=tmp_path / "rows.csv", target="y", weight="w")
    assert sent[0]["json"]["sample_weights"] == [1, 2.5]
    assert sent[1]["data"] == {"target": "y", "weight": "w"}


def test_an_error_envelope_is_read_and_names_its_fields():
    body = {
        "error": {
            "code": "unprocessable_entity",
            "message": "layers[1].units: must be >= 1",
            "details": {"network.layers[1].units": ["must be >= 1"]},
        }
    }
    error = ApiError.from_response(response(422, json.dumps(body).encode()))
    assert (error.status, error.code) == (422, "unprocessable_entity")
    assert error.details == {"network.layers[1].units": ["must be >= 1"]}
    assert str(error) == "422 unprocessable_entity: network.layers[1].units: must be >= 1"


def test_several_fields_stay_on_one_line():
    body = {
        "error": {
            "code": "unprocessable_entity",
            "message": "m",
            "details": {"a": ["x", "y"], "b": ["z"]},
        }
    }
    assert str(ApiError.from_response(response(422, json.dumps(body).encode()))) == (
        "422 unprocessable_entity: a: x; y; b: z"
    )


def test_a_v2_error_and_a_body_that_is_not_json():
    v2 = ApiError.from_response(response(404, b'{"error": "no model xor"}', "NOT FOUND"))
    assert (v2.code, v2.message, str(v2)) == (
        "not_found",
        "no model xor",
        "404 not_found: no model xor",
    )
    proxy = ApiError.from_response(response(502, b"<html>Bad\n Gateway</html>", "Bad Gateway"))
    assert str(proxy) == "502 bad_gateway: <html>Bad Gateway</html>"


def test_events_are_parsed_and_comments_skipped():
    lines = [
        ": keep-alive",
        "",
        "event: status",
        'data: {"status": "running"}',
        "",
        "event: epoch",
        "id: 1",
        'data: {"epoch": 1}',
        "",
    ]
    assert list(parse_events(lines)) == [
        Event("status", {"status": "running"}),
        Event("epoch", {"epoch": 1}, 1),
    ]


def test_follow_resumes_after_the_last_epoch_without_repeating_the_status(monkeypatch):
    running, done = {"status": "running"}, {"status": "succeeded"}
    connections = [
        [Event("status", running), Event("epoch", {"epoch": 1}, 1), requests.ConnectionError()],
        [Event("status", running), Event("epoch", {"epoch": 2}, 2), Event("status", done)],
    ]
    resumed_after = []

    def events(job_id, last_epoch):
        resumed_after.append(last_epoch)
        for item in connections.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item

    client = Client("http://unused")
    monkeypatch.setattr(client, "_events", events)
    monkeypatch.setattr("backprop_client.client.time.sleep", lambda seconds: None)
    assert [(e.type, e.data) for e in client.follow(7)] == [
        ("status", running),
        ("epoch", {"epoch": 1}),
        ("epoch", {"epoch": 2}),
        ("status", done),
    ]
    assert resumed_after == [None, 1]


def test_follow_reads_the_epochs_of_a_job_that_ended_before_the_stream_opened(monkeypatch):
    done = {"status": "succeeded"}
    connections = [
        [Event("status", done), Event("epoch", {"epoch": 1}, 1), Event("epoch", {"epoch": 2}, 2),
         Event("status", done)],
    ]  # fmt: skip
    client = Client("http://unused")
    monkeypatch.setattr(client, "_events", lambda job_id, last_epoch: iter(connections.pop(0)))
    assert [(e.type, e.data) for e in client.follow(7)] == [
        ("status", done),
        ("epoch", {"epoch": 1}),
        ("epoch", {"epoch": 2}),
    ]
    assert connections == []  # read once, not opened again


def test_follow_gives_up_on_a_stream_that_keeps_dropping(monkeypatch):
    def events(job_id, last_epoch):
        raise requests.ConnectionError()
        yield

    client = Client("http://unused")
    monkeypatch.setattr(client, "_events", events)
    monkeypatch.setattr("backprop_client.client.time.sleep", lambda seconds: None)
    with pytest.raises(ConnectionError, match="keeps dropping"):
        list(client.follow(7))


def test_importing_the_client_loads_none_of_the_service_stack(tmp_path):
    code = "import json, sys, backprop_client; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert "requests" in loaded
    forbidden = {"flask", "sqlalchemy", "celery", "numpy", "service", "worker", "model_core"}
    assert not loaded & forbidden


class Answers:
    """Stands in for ``Client._request``: each call gets the next of ``answers`` and is kept."""

    def __init__(self, *answers: requests.Response):
        self.answers = list(answers)
        self.calls: list[tuple[str, str]] = []

    def __call__(self, method: str, path: str, **_kwargs) -> requests.Response:
        self.calls.append((method, path))
        return self.answers.pop(0)


def operation(status: str, **fields) -> requests.Response:
    return response(200, json.dumps({"id": 7, "status": status, **fields}).encode())


def test_a_gate_accepted_for_later_is_waited_for_and_its_result_returned(monkeypatch):
    client = Client("http://api.example")
    answers = Answers(
        response(202, json.dumps({"id": 7, "status": "queued"}).encode()),
        operation("running"),
        operation("succeeded", result={"alias": {"version": 4}}),
    )
    monkeypatch.setattr(client, "_request", answers)
    assert client.promote("iris", "production", 4, 9) == {"alias": {"version": 4}}
    assert answers.calls[1:] == [("GET", "/v1/operations/7")] * 2


def test_a_failed_operation_raises_the_error_its_request_would_have_answered(monkeypatch):
    client = Client("http://api.example")
    error = {
        "status": 409,
        "code": "conflict",
        "message": "Version 4 did not pass the gate: require.accuracy.min.",
        "details": {"require.accuracy.min": ["0.9 < 0.95"]},
    }
    answers = Answers(
        response(202, json.dumps({"id": 7, "status": "queued"}).encode()),
        operation("failed", error=error),
    )
    monkeypatch.setattr(client, "_request", answers)
    with pytest.raises(ApiError) as raised:
        client.importance("iris", 9, rows=10)
    assert (raised.value.status, raised.value.code) == (409, "conflict")
    assert raised.value.details == {"require.accuracy.min": ["0.9 < 0.95"]}
