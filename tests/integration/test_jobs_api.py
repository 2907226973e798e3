"""The jobs API against real processes on both backends: cancel, Idempotency-Key, the event
stream, and a submission the API's broker refuses.

The PostgreSQL and Redis servers are shared with fault tests that restart them: reads retry
through a brief outage, and submissions carry an Idempotency-Key so that they may retry too.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from service.api.events import MAX_OPEN_STREAMS
from service.settings import Settings
from tests.factories import free_port, job_body, wait_until
from tests.integration.conftest import FINISHED, ON_POSTGRES, START_DEADLINE_SECONDS, Stack

# About 6 ms an epoch on the digits sample: a job of LONG_EPOCHS outlasts any test here.
DIGITS_NETWORK = {
    "layers": [{"units": 128, "activation": "relu"}, {"units": 10, "activation": "softmax"}],
}
LONG_EPOCHS = 5000
STREAMED_EPOCHS = 400
OUTAGE_SECONDS = 30
CANCEL_SECONDS = 5


def digits_job(dataset_id: int, epochs: int) -> dict:
    training = {"epochs": epochs, "batch_size": 32, "seed": 7}
    return {"dataset_id": dataset_id, "network": DIGITS_NETWORK, "training": training}


def retrying(call, *args, **kwargs) -> requests.Response:
    """``call(*args)``, again while the API cannot reach a restarting database (5xx) or is not
    reachable itself, for up to ``OUTAGE_SECONDS``."""
    deadline = time.monotonic() + OUTAGE_SECONDS
    while True:
        try:
            response = call(*args, **kwargs)
            if response.status_code < 500 or time.monotonic() > deadline:
                return response
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def read_job(stack: Stack, job_id: int) -> dict:
    return retrying(stack.get, f"/v1/jobs/{job_id}").json()


def submit(stack: Stack, body: dict) -> requests.Response:
    """POST /v1/jobs with a fresh Idempotency-Key, so that a retry cannot create a second job."""
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    response = retrying(stack.post, "/v1/jobs", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return response


def wait_for(stack: Stack, job_id: int, statuses: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = read_job(stack, job_id)
        if job["status"] in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(
        f"job {job_id} still {job['status']} after {timeout} s\n{stack.log_tail()}"
    )


def cancel(stack: Stack, job_id: int) -> requests.Response:
    return retrying(stack.post, f"/v1/jobs/{job_id}/cancel")


def assert_history_kept(stack: Stack, job: dict) -> None:
    """Epochs 1..job["epoch"], each once, in order."""
    epochs = retrying(stack.get, f"/v1/jobs/{job['id']}/epochs?limit=10000").json()
    assert job["epoch"] > 0
    assert [record["epoch"] for record in epochs] == list(range(1, job["epoch"] + 1))


@pytest.fixture(scope="module")
def digits_id(stack) -> int:
    return stack.create("/v1/datasets", 201, json={"builtin": "digits"})["id"]


@pytest.fixture
def long_jobs(stack, digits_id) -> Iterator[list[int]]:
    """Two long jobs, one running on each worker; cancelled at the end whatever happens."""
    job_ids = [submit(stack, digits_job(digits_id, LONG_EPOCHS)).json()["id"] for _ in range(2)]
    for job_id in job_ids:
        wait_for(stack, job_id, {"running"}, timeout=60)
    yield job_ids
    for job_id in job_ids:
        cancel(stack, job_id)
        wait_for(stack, job_id, FINISHED, timeout=60)


def test_cancel_a_queued_a_running_and_a_finished_job(stack, digits_id, long_jobs):
    queued = submit(stack, digits_job(digits_id, 10)).json()
    assert read_job(stack, queued["id"])["status"] == "queued"  # both workers are busy
    response = cancel(stack, queued["id"])
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "cancelled"

    running = long_jobs[0]
    asked_at = time.monotonic()
    response = cancel(stack, running)
    assert response.status_code == 202, response.text
    assert response.json()["cancel_requested"] is True
    job = wait_for(stack, running, FINISHED, timeout=CANCEL_SECONDS)
    print(f"running job cancelled in {time.monotonic() - asked_at:.2f} s at epoch {job['epoch']}")
    assert job["status"] == "cancelled" and job["model_id"] is None
    assert 0 < job["epoch"] < LONG_EPOCHS
    assert_history_kept(stack, job)

    assert cancel(stack, running).status_code == 409
    cancel(stack, long_jobs[1])
    wait_for(stack, long_jobs[1], FINISHED, timeout=CANCEL_SECONDS)
    time.sleep(1)  # a worker is free now: the cancelled job's message, if any, trains nothing
    job = read_job(stack, queued["id"])
    assert (job["status"], job["attempt"], job["started_at"]) == ("cancelled", 0, None)


def test_one_idempotency_key_sent_at_once_from_many_clients_creates_one_job(stack):
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "xor"})
    body = job_body(dataset["id"], epochs=5)
    headers = {"Idempotency-Key": f"burst-{uuid.uuid4()}"}

    def post(_):
        response = requests.post(
            f"{stack.base_url}/v1/jobs", json=body, headers=headers, timeout=60
        )
        return response.status_code, response.json()["id"], response.headers

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(post, range(12)))
    assert {(status, job_id) for status, job_id, _ in results} == {(202, results[0][1])}
    assert sum("Idempotent-Replayed" not in headers for *_, headers in results) == 1
    assert stack.wait_for_job(results[0][1])["status"] == "succeeded"


def read_events(response: requests.Response) -> Iterator[dict]:
    """The events of an open SSE response as ``{"event", "id", "data"}``; comments skipped."""
    fields: dict = {}
    for line in response.iter_lines(decode_unicode=True):
        if line:
            if not line.startswith(":"):
                name, value = line.split(": ", 1)
                fields[name] = value
            continue
        if fields:
            yield {**fields, "data": json.loads(fields["data"])}
        fields = {}


def open_stream(stack: Stack, job_id: int, last_event_id: int | None = None):
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    response = retrying(
        requests.get,
        f"{stack.base_url}/v1/jobs/{job_id}/events",
        headers=headers,
        stream=True,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response


def test_the_event_stream_delivers_every_epoch_in_order_and_resumes(stack, digits_id):
    job_id = submit(stack, digits_job(digits_id, STREAMED_EPOCHS)).json()["id"]
    seen = []
    with open_stream(stack, job_id) as first:
        for event in read_events(first):
            seen.append(event)
            if event["event"] == "epoch":
                break  # a reconnect mid-job
    last_id = int(seen[-1]["id"])
    started = time.monotonic()
    with open_stream(stack, job_id, last_event_id=last_id) as second:
        seen += list(read_events(second))
    print(f"{len(seen)} events; the resumed stream ran {time.monotonic() - started:.2f} s")

    epochs = [event["data"]["epoch"] for event in seen if event["event"] == "epoch"]
    assert epochs == list(range(1, STREAMED_EPOCHS + 1))
    assert [event["id"] for event in seen if event["event"] == "epoch"] == list(map(str, epochs))
    statuses = [event["data"]["status"] for event in seen if event["event"] == "status"]
    assert statuses[-1] == "succeeded" and "running" in statuses
    assert seen[-1]["event"] == "status"  # the final status comes after every epoch
    assert read_job(stack, job_id)["status"] == "succeeded"


# Nothing listens there; on the embedded backend too (a missing SQLite file would be created).
DEAD_BROKER = "redis://127.0.0.1:1/0"


def stack_database_url(request, stack: Stack) -> str:
    """The database of the ``stack`` fixture, as tests/integration/conftest.py configures it."""
    if request.node.callspec.params["stack"] == "embedded":
        return f"sqlite:///{stack.logs / 'var' / 'backprop.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def api_with_a_dead_broker(request, stack) -> Iterator[Stack]:
    """A second API process on the stack's database whose broker URL goes nowhere; the stack's
    dispatcher and workers still reach the real broker."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": stack_database_url(request, stack),
        "BROKER_URL": DEAD_BROKER,
        "BROKER_TIMEOUT_SECONDS": "0.5",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "DRAIN_SECONDS": "0",  # no load balancer in front: a SIGTERM stops it at once
    }
    log = (stack.logs / "api-dead-broker.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.commands.cli", "api"], env=env, stdout=log, stderr=log
    )
    api = Stack(f"http://127.0.0.1:{port}", stack.logs)
    try:
        wait_until(
            lambda: api.get("/health/live").ok,
            START_DEADLINE_SECONDS,
            "the API with a dead broker",
            ignoring=(requests.ConnectionError, requests.Timeout),
        )
        yield api
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


# On PostgreSQL + Redis only: the embedded default's broker is a file beside the database, not a
# server that can be away.
@ON_POSTGRES
def test_a_job_submitted_while_the_broker_is_unreachable_is_accepted_and_runs(
    stack, api_with_a_dead_broker, digits_id
):
    def unready_for_the_broker() -> dict | None:
        """/health/ready's 503 once the process has warmed its models (before, it names its
        warm-up, "serving")."""
        ready = api_with_a_dead_broker.get("/health/ready")
        assert ready.status_code == 503
        details = ready.json()["error"]["details"]
        return details if "serving" not in details else None

    assert "broker" in wait_until(unready_for_the_broker, 60, "the warm-up to end")
    started = time.monotonic()
    response = submit(api_with_a_dead_broker, digits_job(digits_id, 20))
    print(f"accepted in {time.monotonic() - started:.2f} s with the broker unreachable")
    assert response.json()["status"] == "queued"
    job = stack.wait_for_job(response.json()["id"], timeout=60)
    assert job["status"] == "succeeded", job


def test_open_streams_leave_threads_for_every_other_request(stack, long_jobs):
    """More streams than one tenant may hold in the API's processes: the surplus is refused with
    429 (its share, STREAMS_PER_TENANT; the 503 of a process whose every slot is taken is
    tests/service/api/test_events.py's), and an ordinary request still answers."""
    responses = [
        requests.get(f"{stack.base_url}/v1/jobs/{long_jobs[0]}/events", stream=True, timeout=30)
        for _ in range(2 * MAX_OPEN_STREAMS + 10)
    ]
    try:
        statuses = [response.status_code for response in responses]
        assert set(statuses) == {200, 429}
        per_tenant = Settings().streams_per_tenant
        assert statuses.count(200) <= 2 * per_tenant  # WEB_CONCURRENCY is 2
        assert stack.get(f"/v1/jobs/{long_jobs[1]}").status_code == 200
        print(f"{statuses.count(200)} streams, {statuses.count(429)} refused")
    finally:
        for response in responses:
            response.close()
