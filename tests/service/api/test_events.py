"""GET /v1/jobs/{id}/events: the Server-Sent Events format, resuming, and a stream that follows a
job as its epochs are stored (rows inserted here, as a worker would)."""

import itertools
import json

import pytest
from sqlalchemy.exc import OperationalError

from service.api import events
from service.api.events import HEARTBEAT, JobEventStream
from service.db.models import TrainingJob
from service.vocabulary import JobStatus
from tests.factories import add_epochs, api_key, assert_envelope, bearer, queued_xor_job


def set_status(sessions, job_id: int, status: JobStatus) -> None:
    with sessions() as session:
        session.get(TrainingJob, job_id).status = status
        session.commit()


def parse_events(text: str) -> list[dict]:
    """The events of an SSE body: ``{"event", "id", "data"}`` each; comments are skipped."""
    parsed = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line[:1] != ":")
        if fields:
            parsed.append({**fields, "data": json.loads(fields["data"])})
    return parsed


def summary(parsed: list[dict]) -> list[str]:
    """``status:running``, ``epoch:1``...: what a client sees, in order."""
    return [
        f"status:{event['data']['status']}"
        if event["event"] == "status"
        else f"epoch:{event['data']['epoch']}"
        for event in parsed
    ]


@pytest.fixture
def finished_job(sessions) -> int:
    """A job that failed after five epochs."""
    job_id = queued_xor_job(sessions, epochs=10)
    add_epochs(sessions, job_id, range(1, 6))
    set_status(sessions, job_id, JobStatus.FAILED)
    return job_id


def test_a_finished_job_streams_its_status_its_epochs_then_its_final_status(client, finished_job):
    """The status on connecting comes first, as for an active job; the final one ends it."""
    response = client.get(f"/v1/jobs/{finished_job}/events")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    text = response.get_data(as_text=True)
    assert text.startswith("event: status\ndata: {")
    parsed = parse_events(text)
    assert summary(parsed) == [
        "status:failed",
        "epoch:1",
        "epoch:2",
        "epoch:3",
        "epoch:4",
        "epoch:5",
        "status:failed",
    ]
    assert [event.get("id") for event in parsed] == [None, "1", "2", "3", "4", "5", None]
    assert parsed[0]["data"] == parsed[-1]["data"]
    assert parsed[2]["data"] == {
        "epoch": 2,
        "train_loss": 0.5,
        "val_loss": None,
        "train_accuracy": None,
        "val_accuracy": None,
        "learning_rate": 0.05,
        "seconds": 0.01,
    }
    assert parsed[-1]["data"] == {
        "id": finished_job,
        "status": "failed",
        "attempt": 0,
        "epoch": 5,
        "epochs": 10,
        "cancel_requested": False,
        "error": None,
        "model_id": None,
    }


def test_last_event_id_resumes_after_that_epoch(client, finished_job):
    response = client.get(f"/v1/jobs/{finished_job}/events", headers={"Last-Event-ID": "3"})
    assert summary(parse_events(response.get_data(as_text=True))) == [
        "status:failed",
        "epoch:4",
        "epoch:5",
        "status:failed",
    ]


@pytest.mark.parametrize("last_event_id", ["x", "-1"])
def test_a_bad_last_event_id_is_422(client, finished_job, last_event_id):
    response = client.get(
        f"/v1/jobs/{finished_job}/events", headers={"Last-Event-ID": last_event_id}
    )
    assert_envelope(response, 422, "Last-Event-ID")


def test_an_unknown_job_is_404(client):
    assert_envelope(client.get("/v1/jobs/999/events"), 404)


class WorkerSteps:
    """A ``sleep`` that moves the job one step on at each poll, as its worker would."""

    def __init__(self, sessions, job_id: int):
        self.steps = iter(
            [
                lambda: set_status(sessions, job_id, JobStatus.RUNNING),
                lambda: add_epochs(sessions, job_id, range(1, 3)),
                lambda: None,
                lambda: add_epochs(sessions, job_id, range(3, 4)),
                lambda: set_status(sessions, job_id, JobStatus.SUCCEEDED),
            ]
        )

    def __call__(self, _seconds: float) -> None:
        next(self.steps)()


def test_a_stream_follows_the_job_from_queued_to_succeeded(sessions):
    job_id = queued_xor_job(sessions)
    stream = JobEventStream(sessions, job_id, sleep=WorkerSteps(sessions, job_id))
    assert summary(parse_events("".join(stream))) == [
        "status:queued",
        "status:running",
        "epoch:1",
        "epoch:2",
        "epoch:3",
        "status:succeeded",
    ]


def test_the_final_status_waits_for_every_page_of_epochs(sessions, finished_job, monkeypatch):
    monkeypatch.setattr(events, "EPOCHS_PER_POLL", 2)
    chunks = list(JobEventStream(sessions, finished_job, sleep=pytest.fail))
    assert [summary(parse_events(chunk)) for chunk in chunks] == [
        ["status:failed", "epoch:1", "epoch:2"],
        ["epoch:3", "epoch:4"],
        ["epoch:5", "status:failed"],
    ]


def test_a_quiet_stream_sends_a_heartbeat_comment(sessions):
    job_id = queued_xor_job(sessions)
    now = itertools.count(step=10.0)
    stream = JobEventStream(
        sessions, job_id, heartbeat_seconds=15, clock=lambda: next(now), sleep=lambda _: None
    )
    first, *quiet = itertools.islice(stream, 3)
    assert summary(parse_events(first)) == ["status:queued"]
    assert quiet == [HEARTBEAT, HEARTBEAT]


def test_a_database_blip_skips_a_poll_not_the_stream(sessions, finished_job):
    calls = itertools.count()

    def flaky_sessions():
        if next(calls) == 0:
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        return sessions()

    stream = JobEventStream(flaky_sessions, finished_job, sleep=lambda _: None)
    assert summary(parse_events("".join(stream)))[-1] == "status:failed"


def test_streams_beyond_the_cap_are_503_and_a_closed_stream_frees_its_slot(app, finished_job):
    app.extensions["event_streams"] = events.StreamSlots(limit=1, per_tenant=2)
    client = app.test_client()
    first = client.get(f"/v1/jobs/{finished_job}/events", buffered=False)
    assert_envelope(client.get(f"/v1/jobs/{finished_job}/events"), 503)
    first.close()
    for _ in range(2):  # buffered: read to its end, then closed as a WSGI server does
        assert client.get(f"/v1/jobs/{finished_job}/events", buffered=True).status_code == 200


def tenants_finished_job(sessions, tenant: str) -> int:
    job_id = queued_xor_job(sessions, epochs=10)
    with sessions() as session:
        job = session.get(TrainingJob, job_id)
        job.status, job.tenant = JobStatus.FAILED, tenant
        session.commit()
    return job_id


def test_one_tenant_holding_its_share_of_streams_leaves_the_others_theirs(client_with, sessions):
    client = client_with(auth="required", streams_per_tenant=2)
    client.application.extensions["event_streams"].limit = 3
    alice, bob = (
        (bearer(api_key(sessions, tenant, "read")), tenants_finished_job(sessions, tenant))
        for tenant in ("alice", "bob")
    )
    held = [client.get(f"/v1/jobs/{alice[1]}/events", headers=alice[0], buffered=False)]
    held.append(client.get(f"/v1/jobs/{alice[1]}/events", headers=alice[0], buffered=False))
    assert (
        "STREAMS_PER_TENANT"
        in assert_envelope(client.get(f"/v1/jobs/{alice[1]}/events", headers=alice[0]), 429)[
            "message"
        ]
    )
    held.append(client.get(f"/v1/jobs/{bob[1]}/events", headers=bob[0], buffered=False))
    assert [response.status_code for response in held] == [200, 200, 200]
    assert_envelope(client.get(f"/v1/jobs/{bob[1]}/events", headers=bob[0]), 503)  # 3 of 3
    for response in held:
        response.close()
    assert client.get(f"/v1/jobs/{alice[1]}/events", headers=alice[0]).status_code == 200
