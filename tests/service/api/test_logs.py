"""Request ids and log lines: X-Request-ID taken or made and echoed, one JSON line per request,
and the id following a job into the worker's lines."""

import dataclasses
import io
import json
import logging

import pytest

from service.api.app import create_app
from service.db.models import TrainingJob
from service.logs import RequestIdFilter, formatter, log_handler, request_id_set
from tests.factories import api_key, bearer, job_body
from worker.training import run_training


@pytest.fixture
def log_lines(settings):
    """A function returning the JSON lines logged so far (at INFO, through the service's
    handler on the root logger, as every process installs it)."""
    stream = io.StringIO()
    handler = log_handler(dataclasses.replace(settings, log_format="json"))
    handler.setStream(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def request_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "service.requests"]


def test_a_request_id_is_made_when_none_is_given(client):
    first = client.get("/health/live").headers["X-Request-ID"]
    second = client.get("/health/live").headers["X-Request-ID"]
    assert len(first) == 32 and int(first, 16) >= 0
    assert first != second


@pytest.mark.parametrize("given", ["abc-123", "a" * 64, "req:7/x=1"])
def test_a_valid_request_id_is_echoed(client, given):
    assert (
        client.get("/health/live", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given
    )


@pytest.mark.parametrize("given", ["a" * 65, "two words", "caf\u00e9", "tab\there", ""])
def test_an_unusable_request_id_is_replaced(client, given):
    echoed = client.get("/health/live", headers={"X-Request-ID": given}).headers["X-Request-ID"]
    assert echoed != given and len(echoed) == 32


def test_errors_and_unknown_paths_echo_the_id_too(client):
    for path in ("/v1/jobs/999", "/nowhere"):
        response = client.get(path, headers={"X-Request-ID": "lost-1"})
        assert response.status_code == 404
        assert response.headers["X-Request-ID"] == "lost-1"


def test_one_json_line_per_request(client, log_lines):
    client.get("/v1/jobs/7", headers={"X-Request-ID": "find-me"})
    client.get("/health/live")
    first, second = request_lines(log_lines())
    assert first == {
        **first,
        "level": "INFO",
        "message": "GET /v1/jobs/7 404",
        "route": "/v1/jobs/<int:job_id>",
        "method": "GET",
        "status": 404,
        "tenant": "default",
        "request_id": "find-me",
        "remote_addr": "127.0.0.1",
    }
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    # The keys in the order python-json-logger wrote them (tests/service/test_logs.py).
    assert list(first) == [
        "level",
        "logger",
        "process",
        "message",
        *("route", "method", "status", "duration_ms", "tenant", "key_id", "remote_addr"),
        "request_id",
        "time",
    ]
    # Outside /v1 and /v2 no tenant is involved.
    assert second["route"] == "/health/live" and second["tenant"] is None


def test_a_refused_request_is_logged_with_its_id(settings, sessions, log_lines):
    client = create_app(dataclasses.replace(settings, auth="required")).test_client()
    api_key(sessions, "acme")  # a key exists, but the request sends none
    response = client.get("/v1/datasets", headers={"X-Request-ID": "no-key"})
    assert response.status_code == 401 and response.headers["X-Request-ID"] == "no-key"
    (line,) = request_lines(log_lines())
    assert (line["status"], line["request_id"], line["tenant"]) == (401, "no-key", None)


def test_the_tenant_of_the_key_is_logged(settings, sessions, log_lines):
    client = create_app(dataclasses.replace(settings, auth="required")).test_client()
    key = api_key(sessions, "acme")
    assert client.get("/v1/datasets", headers=bearer(key)).status_code == 200
    (line,) = request_lines(log_lines())
    assert line["tenant"] == "acme"


def test_the_request_id_follows_the_job_into_the_worker(client, sessions, log_lines):
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    job_id = client.post(
        "/v1/jobs", json=job_body(dataset_id, epochs=5), headers={"X-Request-ID": "submit-42"}
    ).get_json()["id"]
    with sessions() as session:
        assert session.get(TrainingJob, job_id).request_id == "submit-42"

    run_training(sessions, job_id)
    worker_lines = [line for line in log_lines() if line["logger"] == "worker.training"]
    assert any(line["message"].startswith(f"job {job_id} succeeded") for line in worker_lines)
    assert {line.get("request_id") for line in worker_lines} == {"submit-42"}


def test_lines_outside_a_request_carry_no_request_id(log_lines):
    logging.getLogger("service.dispatcher").warning("between requests")
    (line,) = log_lines()
    assert "request_id" not in line


def test_the_text_format_ends_with_the_request_id():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert formatter("text").format(record).endswith("x: hello")
    with request_id_set("abc"):
        RequestIdFilter().filter(record)
    assert formatter("text").format(record).endswith("x: hello [request abc]")
