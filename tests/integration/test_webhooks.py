"""Webhooks on the live embedded stack: deliveries sent by `backprop webhook-worker` (a queue of
its own, fed by the dispatcher) to real HTTP receivers on loopback, signed as the
`standardwebhooks` package verifies; a receiver answering 500 three times gets the event on the
fourth attempt; a webhook worker process killed in the middle of an attempt loses nothing: the
dispatcher sends the delivery again once the attempt's lease expires."""

import os
import signal
import sqlite3
import threading

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from tests.factories import job_body, wait_until
from tests.integration.conftest import ON_EMBEDDED
from tests.service.webhooks.receivers import Receiver

pytestmark = ON_EMBEDDED


@pytest.fixture(autouse=True)
def no_webhook_left(stack):
    """The stack is shared: its later tests get no deliveries to these tests' receivers."""
    yield
    for hook in stack.get("/v1/webhooks").json():
        stack.http.delete(f"{stack.base_url}/v1/webhooks/{hook['id']}")


def subscribe(stack, url: str, events: list[str]) -> dict:
    return stack.create("/v1/webhooks", 201, json={"url": url, "events": events})


def deliveries(stack, webhook_id: int) -> list[dict]:
    response = stack.get(f"/v1/webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_delivery(stack, webhook_id: int, count: int = 1) -> list[dict]:
    def done():
        found = deliveries(stack, webhook_id)
        ended = [d for d in found if d["status"] != "pending"]
        return found if len(ended) >= count else None

    return wait_until(done, 60, f"{count} deliveries of webhook {webhook_id}")


@pytest.fixture(scope="module")
def model_name(stack) -> str:
    """A registered model version to move aliases to."""
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "xor"})
    body = {**job_body(dataset["id"], epochs=5), "model_name": "hooked"}
    job = stack.wait_for_job(stack.create("/v1/jobs", 202, json=body)["id"])
    assert job["status"] == "succeeded"
    return "hooked"


def test_the_worker_side_delivers_signed_events_of_a_job(stack):
    with Receiver() as receiver:
        hook = subscribe(stack, receiver.url, ["job.finished", "model.version.created"])
        dataset = stack.create("/v1/datasets", 201, json={"builtin": "xor"})
        body = {**job_body(dataset["id"], epochs=5), "model_name": "announced"}
        job = stack.wait_for_job(stack.create("/v1/jobs", 202, json=body)["id"])

        def events_of_the_job() -> dict | None:
            verifier = Verifier(hook["secret"])
            payloads = [verifier.verify(got.body, got.headers) for got in receiver.received]
            found = {p["type"]: p["data"] for p in payloads if p["data"]["job_id"] == job["id"]}
            return found if len(found) == 2 else None

        by_type = wait_until(events_of_the_job, 60, "the job's two events")
    assert by_type["job.finished"]["status"] == "succeeded"
    assert by_type["job.finished"]["model_id"] == job["model_id"]
    assert by_type["model.version.created"] == {
        "model_id": job["model_id"],
        "name": "announced",
        "version": 1,
        "job_id": job["id"],
    }
    shown = wait_for_delivery(stack, hook["id"], count=2)
    assert {d["status"] for d in shown} == {"succeeded"}


def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt(stack, model_name):
    with Receiver(statuses=[500, 500, 500]) as receiver:
        hook = subscribe(stack, receiver.url, ["alias.moved"])
        moved = stack.http.put(
            f"{stack.base_url}/v1/models/{model_name}/aliases/retried", json={"version": 1}
        )
        assert moved.status_code == 200, moved.text
        [delivery] = wait_for_delivery(stack, hook["id"])
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500, 200]
    assert len({got.headers["webhook-id"] for got in receiver.received}) == 1
    payload = Verifier(hook["secret"]).verify(
        receiver.received[-1].body, receiver.received[-1].headers
    )
    assert payload["data"] == {
        "name": model_name,
        "alias": "retried",
        "old_version": None,
        "new_version": 1,
        "old_split": None,
        "new_split": None,
        "old_shadow": None,
        "new_shadow": None,
    }


def attempt_owner(stack, delivery_id: int) -> str | None:
    database = stack.logs / "var" / "backprop.sqlite"
    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT owner FROM webhook_attempts WHERE delivery_id = ? AND number = 1",
            (delivery_id,),
        ).fetchone()
    return row and row[0]


def test_a_webhook_worker_killed_mid_attempt_still_delivers_once_requeued(stack, model_name):
    first_arrived, release = threading.Event(), threading.Event()
    with Receiver() as receiver:
        answer = receiver.server.RequestHandlerClass.do_POST

        def hold_the_first(handler) -> None:
            if not first_arrived.is_set():
                first_arrived.set()
                release.wait(30)
                return  # the sender is gone: nothing to answer
            answer(handler)

        receiver.server.RequestHandlerClass.do_POST = hold_the_first
        hook = subscribe(stack, receiver.url, ["alias.moved"])
        moved = stack.http.put(
            f"{stack.base_url}/v1/models/{model_name}/aliases/killed", json={"version": 1}
        )
        assert moved.status_code == 200, moved.text
        assert first_arrived.wait(30), stack.log_tail()
        [pending] = deliveries(stack, hook["id"])
        owner = attempt_owner(stack, pending["id"])
        os.kill(int(owner.rsplit(":", 1)[1]), signal.SIGKILL)
        release.set()
        [delivery] = wait_for_delivery(stack, hook["id"])
    assert delivery["status"] == "succeeded"
    lost, sent = delivery["attempts"]
    assert lost["finished_at"] is None and lost["status_code"] is None
    assert sent["status_code"] == 200
    assert receiver.received[-1].headers["webhook-id"] == delivery["event_id"]
