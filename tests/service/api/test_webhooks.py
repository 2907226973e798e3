"""/v1/webhooks over the API: admin keys only, a tenant's own, the secret shown once and
stored sealed, bad bodies named by field, internal addresses refused at creation (a stubbed
resolver), and the events a change writes to the outbox in its own transaction."""

import json
import time

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook as Verifier

from service.db.models import TrainingJob, Webhook, WebhookDelivery
from service.webhooks import addresses
from service.webhooks.signing import signed_headers
from tests.factories import api_key, assert_envelope, bearer, job_body, sweep_body
from tests.service.serving.test_contracts import train_version
from tests.service.serving.test_models_evaluate import iris_csv, upload_csv
from worker.training import run_training

PUBLIC_ADDRESS = "93.184.215.14"  # resolved to, never connected to: no delivery runs here
EVERY_EVENT = ["model.version.created", "alias.moved", "job.finished", "sweep.finished"]


@pytest.fixture(autouse=True)
def resolver(monkeypatch):
    """Every host resolves to ``resolved[host]``, else to a public address."""
    resolved: dict[str, list[str]] = {}

    def resolve(host: str, _port: int) -> list[str]:
        return resolved.get(host, [PUBLIC_ADDRESS])

    monkeypatch.setattr(addresses, "system_resolver", resolve)
    return resolved


def subscribe(client, events=EVERY_EVENT, **changes) -> dict:
    body = {"url": "https://hooks.example.com/backprop", "events": events, **changes}
    response = client.post("/v1/webhooks", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def outbox(sessions) -> list[WebhookDelivery]:
    with sessions() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_a_webhook_is_created_shown_listed_and_deleted(client, sessions):
    made = subscribe(client)
    assert made["secret"].startswith("whsec_") and made["events"] == EVERY_EVENT
    shown = client.get(f"/v1/webhooks/{made['id']}").get_json()
    assert shown == {key: made[key] for key in ("id", "url", "events", "created_at")}
    assert client.get("/v1/webhooks").get_json() == [shown]
    with sessions() as session:
        sealed = session.get(Webhook, made["id"]).secret_sealed
    assert made["secret"] not in sealed and made["secret"][6:] not in sealed
    assert client.delete(f"/v1/webhooks/{made['id']}").status_code == 204
    assert_envelope(client.get(f"/v1/webhooks/{made['id']}"), 404)
    assert_envelope(client.get(f"/v1/webhooks/{made['id']}/deliveries"), 404)


def test_a_given_secret_is_kept_and_signs_what_verifiers_accept(client):
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert subscribe(client, secret=secret)["secret"] == secret
    body = '{"type": "alias.moved"}'
    headers = signed_headers(secret, "msg_1", int(time.time()), body)
    assert Verifier(secret).verify(body, headers) == {"type": "alias.moved"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://hooks.example.com/", "events": ["alias.moved"]}, "url"),
        ({"url": "https://hooks.example.com/", "events": ["model.deleted"]}, "events[0]"),
        ({"url": "https://hooks.example.com/", "events": []}, "events"),
        ({"events": ["alias.moved"]}, "url"),
        ({"url": "https://u:p@hooks.example.com/", "events": ["alias.moved"]}, "url"),
        ({"url": "https://hooks.example.com/", "events": ["alias.moved"], "secret": "x"}, "secret"),
        (
            {
                "url": "https://hooks.example.com/",
                "events": ["alias.moved"],
                "secret": "whsec_c2hvcnQ=",
            },
            "secret",
        ),
    ],
)
def test_bad_bodies_name_their_field(client, body, field):
    assert_envelope(client.post("/v1/webhooks", json=body), 422, field)


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "10.0.0.1",
        "127.0.0.1",
        "0.0.0.0",
        "::1",
        "::ffff:10.0.0.1",
        "224.0.0.1",
        "fd00:ec2::254",
        "100.100.100.200",
        "192.168.1.1",
        "172.16.0.1",
        "fe80::1",
    ],
)
def test_a_url_reaching_an_internal_address_is_refused(client, resolver, address):
    resolver["hooks.example.com"] = [PUBLIC_ADDRESS, address]
    error = assert_envelope(
        client.post(
            "/v1/webhooks", json={"url": "https://hooks.example.com/x", "events": ["alias.moved"]}
        ),
        422,
        "url",
    )
    assert address in json.dumps(error)


def test_the_metadata_address_by_its_literal_ip_is_refused(client, resolver):
    resolver["169.254.169.254"] = ["169.254.169.254"]
    body = {"url": "http://169.254.169.254/latest/meta-data/", "events": ["alias.moved"]}
    assert_envelope(client.post("/v1/webhooks", json=body), 422, "url")


def test_webhooks_need_an_admin_key_and_belong_to_its_tenant(client_with, sessions):
    client = client_with(auth="required")
    alice, bob = api_key(sessions, "alice", "admin"), api_key(sessions, "bob", "admin")
    body = {"url": "https://hooks.example.com/x", "events": ["alias.moved"]}
    for scope in ("read", "write"):
        key = api_key(sessions, "alice", scope)
        assert_envelope(client.post("/v1/webhooks", json=body, headers=bearer(key)), 403)
        assert_envelope(client.get("/v1/webhooks", headers=bearer(key)), 403)
    made = client.post("/v1/webhooks", json=body, headers=bearer(alice)).get_json()
    assert_envelope(client.get(f"/v1/webhooks/{made['id']}", headers=bearer(bob)), 404)
    assert_envelope(client.delete(f"/v1/webhooks/{made['id']}", headers=bearer(bob)), 404)
    assert client.get("/v1/webhooks", headers=bearer(bob)).get_json() == []
    with sessions() as session:
        assert session.get(Webhook, made["id"]).tenant == "alice"


def test_training_and_moving_an_alias_write_their_events_to_the_outbox(client, sessions, settings):
    hook = subscribe(client)
    subscribe(client, events=["job.finished"])
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    job_id = client.post(
        "/v1/jobs", json={**job_body(dataset_id, epochs=5), "model_name": "xor"}
    ).get_json()["id"]
    run_training(sessions, job_id, settings)
    model_id = client.get(f"/v1/jobs/{job_id}").get_json()["model_id"]
    assert client.put("/v1/models/xor/aliases/prod", json={"version": 1}).status_code == 200
    assert client.delete("/v1/models/xor/aliases/prod").status_code == 204
    events = [
        (row.webhook_id, row.event_type, json.loads(row.body)["data"]) for row in outbox(sessions)
    ]
    assert events == [
        (
            hook["id"],
            "model.version.created",
            {"model_id": model_id, "name": "xor", "version": 1, "job_id": job_id},
        ),
        (
            hook["id"],
            "job.finished",
            {
                "job_id": job_id,
                "status": "succeeded",
                "error": None,
                "sweep_id": None,
                "model_id": model_id,
            },
        ),
        (
            hook["id"] + 1,
            "job.finished",
            {
                "job_id": job_id,
                "status": "succeeded",
                "error": None,
                "sweep_id": None,
                "model_id": model_id,
            },
        ),
        (
            hook["id"],
            "alias.moved",
            {
                "name": "xor",
                "alias": "prod",
                "old_version": None,
                "new_version": 1,
                "old_split": None,
                "new_split": None,
                "old_shadow": None,
                "new_shadow": None,
            },
        ),
        (
            hook["id"],
            "alias.moved",
            {
                "name": "xor",
                "alias": "prod",
                "old_version": 1,
                "new_version": None,
                "old_split": None,
                "new_split": None,
                "old_shadow": None,
                "new_shadow": None,
            },
        ),
    ]
    rows = outbox(sessions)
    assert rows[1].event_id == rows[2].event_id  # one event, two deliveries
    deliveries = client.get(f"/v1/webhooks/{hook['id']}/deliveries").get_json()
    assert [d["type"] for d in deliveries] == [
        "alias.moved",
        "alias.moved",
        "job.finished",
        "model.version.created",
    ]
    assert deliveries[0]["status"] == "pending" and deliveries[0]["attempts"] == []
    assert deliveries[0]["next_attempt_at"] is not None


def test_an_alias_move_refused_writes_no_event(client, sessions):
    subscribe(client)
    assert client.put("/v1/models/nothing/aliases/prod", json={"version": 1}).status_code == 404
    assert outbox(sessions) == []


def events_written(sessions) -> list[tuple[str, dict]]:
    return [(row.event_type, json.loads(row.body)["data"]) for row in outbox(sessions)]


def test_a_queued_job_cancelled_and_a_sweep_cancelled_write_their_events(client, sessions):
    subscribe(client)
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    job_id = client.post("/v1/jobs", json=job_body(dataset_id, epochs=5)).get_json()["id"]
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    sweep_id = client.post("/v1/sweeps", json=sweep_body(dataset_id)).get_json()["id"]
    assert client.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 202
    assert events_written(sessions) == [
        (
            "job.finished",
            {
                "job_id": job_id,
                "status": "cancelled",
                "error": None,
                "model_id": None,
                "sweep_id": None,
            },
        ),
        (
            "sweep.finished",
            {
                "sweep_id": sweep_id,
                "status": "cancelled",
                "best_job_id": None,
                "model_id": None,
                "name": None,
                "version": None,
            },
        ),
    ]


def test_a_sweep_that_ends_announces_its_best_model(client, sessions, settings):
    subscribe(client)
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    body = sweep_body(dataset_id, epochs=5, max_parallel=4, model_name="best")
    sweep_id = client.post("/v1/sweeps", json=body).get_json()["id"]
    with sessions() as session:
        trials = session.scalars(select(TrainingJob.id).where(TrainingJob.sweep_id == sweep_id))
        trial_ids = list(trials)
    for job_id in trial_ids:
        run_training(sessions, job_id, settings)
    sweep = client.get(f"/v1/sweeps/{sweep_id}").get_json()
    model = client.get("/v1/models/best:1").get_json()
    written = events_written(sessions)
    assert [kind for kind, _ in written] == ["job.finished"] * 4 + [
        "model.version.created",
        "sweep.finished",
    ]
    assert written[-2][1] == {
        "model_id": model["id"],
        "name": "best",
        "version": 1,
        "job_id": sweep["best_job_id"],
    }
    assert written[-1][1] == {
        "sweep_id": sweep_id,
        "status": "succeeded",
        "best_job_id": sweep["best_job_id"],
        "model_id": model["id"],
        "name": "best",
        "version": 1,
    }


def test_a_split_set_on_an_alias_is_an_alias_moved_event_with_the_split(client, sessions, settings):
    subscribe(client, events=["alias.moved"])
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    for _ in range(2):
        body = {**job_body(dataset_id, epochs=5), "model_name": "xor"}
        run_training(sessions, client.post("/v1/jobs", json=body).get_json()["id"], settings)
    assert client.put("/v1/models/xor/aliases/prod", json={"version": 1}).status_code == 200
    split = [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]
    moved = client.put("/v1/models/xor/aliases/prod", json={"versions": split})
    assert moved.status_code == 200, moved.get_json()
    again = client.put("/v1/models/xor/aliases/prod", json={"versions": split})
    assert again.status_code == 200
    [(_, created), (_, to_split)] = events_written(sessions)
    assert created["new_version"] == 1 and created["new_split"] is None
    assert to_split["old_version"] == 1 and to_split["old_split"] is None
    assert to_split["new_version"] == 1 and to_split["new_split"] == split


def test_a_tenant_holds_at_most_max_webhooks_per_tenant(client_with):
    client = client_with(max_webhooks_per_tenant=2)
    subscribe(client)
    subscribe(client)
    body = {"url": "https://hooks.example.com/third", "events": ["alias.moved"]}
    error = assert_envelope(client.post("/v1/webhooks", json=body), 409)
    assert "MAX_WEBHOOKS_PER_TENANT=2" in error["message"]


def test_a_promotion_that_passes_is_an_alias_moved_event_and_a_refusal_none(client, sessions):
    subscribe(client, events=["alias.moved"])
    first, second = (train_version(client, sessions, iris_csv()) for _ in range(2))
    held_out = upload_csv(client, iris_csv(rows=slice(0, 150, 3)))
    first_move = client.put("/v1/models/iris/aliases/production", json={"version": first})
    assert first_move.status_code == 200
    gate = {"version": second, "dataset_id": held_out}
    refused = {**gate, "require": {"accuracy": {"min": 1.01}}}
    promote = "/v1/models/iris/aliases/production/promote"
    assert client.post(promote, json=refused).status_code == 409
    passed = {**gate, "require": {"loss": {"max": 100}}}
    assert client.post(promote, json=passed).status_code == 200
    moves = [(data["old_version"], data["new_version"]) for _, data in events_written(sessions)]
    assert moves == [(None, first), (first, second)]
