"""Tenant isolation on every operation: another tenant's ids and names are not found (404, never
403), in paths, in bodies and in lists. The walk follows the OpenAPI document, so an endpoint
added later is checked too (or fails here until this test knows how to call it)."""

import dataclasses
import re

import pytest

from service.db import keys, records
from service.db.models import Dataset, DatasetBlob
from service.db.tenancy import session_for
from service.generation import generation_for
from tests.conftest import BACKENDS
from tests.factories import api_key, bearer, job_body, sweep_body
from worker.operations import run_operation
from worker.training import run_training

OPEN_PATHS = re.compile(r"^/(health|v2/health)/")
XOR_ROW = [0.0, 1.0]
INFER_BODY = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": XOR_ROW}]}


pytestmark = pytest.mark.parametrize("sessions", BACKENDS, indirect=True)


@pytest.fixture
def settings(settings):
    # Webhooks to loopback: none is delivered here.
    return dataclasses.replace(settings, auth="required", webhook_allow_private=True)


@dataclasses.dataclass
class Holdings:
    """What one tenant has made: a key, a data set, a job, its model (named), an alias, a
    sweep, a webhook, a logged prediction and an operation."""

    key: str
    key_id: int
    dataset_id: int
    job_id: int
    model_id: int
    name: str
    sweep_id: int
    webhook_id: int
    prediction_id: str
    operation_id: int


def holdings(client, sessions, settings, tenant: str, name: str) -> Holdings:
    key = api_key(sessions, tenant, "admin")
    headers = bearer(key)
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}, headers=headers).get_json()[
        "id"
    ]
    body = {**job_body(dataset_id, epochs=20), "model_name": name}
    job_id = client.post("/v1/jobs", json=body, headers=headers).get_json()["id"]
    run_training(sessions, job_id, settings)
    model_id = client.get(f"/v1/jobs/{job_id}", headers=headers).get_json()["model_id"]
    alias = client.put(f"/v1/models/{name}/aliases/prod", json={"version": 1}, headers=headers)
    assert alias.status_code == 200, alias.get_json()
    sweep = client.post("/v1/sweeps", json=sweep_body(dataset_id), headers=headers)
    assert sweep.status_code == 202, sweep.get_json()
    hook = {"url": "http://127.0.0.1:9/hooks", "events": ["alias.moved"]}
    webhook = client.post("/v1/webhooks", json=hook, headers=headers)
    assert webhook.status_code == 201, webhook.get_json()
    key_id = keys.parse_key(key)[0]
    predicted = client.post(
        f"/v1/models/{name}/predict", json={"instances": [XOR_ROW]}, headers=headers
    )
    client.application.extensions["prediction_log"].flush()
    importance = client.post(
        f"/v1/models/{name}/importance",
        json={"dataset_id": dataset_id},
        headers={**headers, "Prefer": "respond-async"},
    )
    assert importance.status_code == 202, importance.get_json()
    return Holdings(
        key,
        key_id,
        dataset_id,
        job_id,
        model_id,
        name,
        sweep.get_json()["id"],
        webhook.get_json()["id"],
        predicted.headers["X-Prediction-Id"],
        importance.get_json()["id"],
    )


@pytest.fixture
def alice(client, sessions, settings) -> Holdings:
    return holdings(client, sessions, settings, "alice", "alices-model")


@pytest.fixture
def bob(client, sessions, settings) -> Holdings:
    return holdings(client, sessions, settings, "bob", "bobs-model")


def path_values(owner: Holdings) -> dict[str, str]:
    """A value for every path parameter of the API, naming ``owner``'s things."""
    return {
        "dataset_id": str(owner.dataset_id),
        "job_id": str(owner.job_id),
        "ref": str(owner.model_id),
        "name": owner.name,
        "alias": "prod",
        "version": "1",
        "key_id": str(owner.key_id),
        "sweep_id": str(owner.sweep_id),
        "webhook_id": str(owner.webhook_id),
        "prediction_id": owner.prediction_id,
        "operation_id": str(owner.operation_id),
    }


def request_body(path: str, method: str, caller: Holdings) -> dict | None:
    """A body the operation accepts, so that only the path decides the answer."""
    action = path.rsplit("/", 1)[-1]
    bodies = {
        "predict": {"instances": [XOR_ROW]},
        "evaluate": {"dataset_id": caller.dataset_id},
        "explain": {"instances": [XOR_ROW]},
        "importance": {"dataset_id": caller.dataset_id},
        "infer": INFER_BODY,
        "{alias}": {"version": 1},
        "promote": {"version": 1, "dataset_id": caller.dataset_id},
        "cancel": None,
        "revoke": None,
    }
    if method in ("get", "delete"):
        return None
    assert action in bodies, f"teach this test a body for {method.upper()} {path}"
    return bodies[action]


def operations_with_path_parameters(client) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json").get_json()
    return [
        (path, method)
        for path, operations in spec["paths"].items()
        if "{" in path and not OPEN_PATHS.match(path)
        for method in operations
        if method in ("get", "post", "put", "delete", "patch")
    ]


def test_every_operation_answers_404_for_another_tenants_ids_and_names(client, alice, bob):
    values = path_values(alice)
    operations = operations_with_path_parameters(client)
    assert len(operations) >= 20
    for path, method in operations:
        parameters = re.findall(r"{(\w+)}", path)
        unknown = set(parameters) - set(values)
        assert not unknown, f"teach this test a value for {unknown} of {path}"
        url = path.format(**values)
        body = request_body(path, method, bob)
        response = client.open(url, method=method.upper(), json=body, headers=bearer(bob.key))
        assert response.status_code == 404, (method, url, response.get_data(as_text=True))
        if url.startswith("/v2"):
            assert set(response.get_json()) == {"error"}
    assert_all_still_there(client, alice)


def assert_all_still_there(client, owner: Holdings) -> None:
    headers = bearer(owner.key)
    for url in (
        f"/v1/datasets/{owner.dataset_id}",
        f"/v1/jobs/{owner.job_id}",
        f"/v1/models/{owner.name}@prod",
        f"/v1/keys/{owner.key_id}",
        f"/v1/sweeps/{owner.sweep_id}",
        f"/v1/webhooks/{owner.webhook_id}",
        f"/v1/predictions/{owner.prediction_id}",
        f"/v1/operations/{owner.operation_id}",
    ):
        response = client.get(url, headers=headers)
        assert response.status_code == 200, url
    assert client.get(f"/v1/keys/{owner.key_id}", headers=headers).get_json()["revoked_at"] is None


def test_feedback_on_another_tenants_prediction_is_refused_as_unknown(client, alice, bob):
    item = {"prediction_id": alice.prediction_id, "row": 0, "label": 1}
    response = client.post(
        "/v1/predictions/feedback", json={"items": [item]}, headers=bearer(bob.key)
    )
    assert response.status_code == 200
    assert response.get_json() == {
        "stored": 0,
        "unknown": [{"index": 0, "prediction_id": alice.prediction_id, "row": 0}],
    }
    mine = client.get(f"/v1/predictions/{alice.prediction_id}", headers=bearer(alice.key))
    assert mine.get_json()["rows"][0]["label"] is None
    listed = client.get(f"/v1/models/{alice.name}/predictions", headers=bearer(bob.key))
    assert listed.status_code == 404


def test_lists_show_only_the_callers_own(client, alice, bob):
    sweep = client.get(f"/v1/sweeps/{bob.sweep_id}", headers=bearer(bob.key)).get_json()
    trials = {entry["job_id"] for entry in sweep["leaderboard"]}
    assert len(trials) == 2  # max_parallel: the sweep's first trials are jobs
    for path, owned in (
        ("/v1/datasets", {bob.dataset_id}),
        ("/v1/jobs", {bob.job_id} | trials),
        ("/v1/models", {bob.model_id}),
        ("/v1/keys", {bob.key_id}),
        ("/v1/sweeps", {bob.sweep_id}),
        ("/v1/webhooks", {bob.webhook_id}),
        ("/v1/operations", {bob.operation_id}),
    ):
        listed = client.get(path, headers=bearer(bob.key)).get_json()
        assert {row["id"] for row in listed} == owned, path
    versions = client.get(f"/v1/models/{bob.name}/versions", headers=bearer(bob.key)).get_json()
    assert [row["id"] for row in versions] == [bob.model_id]


@pytest.mark.parametrize(
    "path, body_for",
    [
        ("/v1/jobs", lambda dataset_id: job_body(dataset_id)),
        ("/v1/jobs/validate", lambda dataset_id: job_body(dataset_id)),
        ("/v1/models/{bob}/evaluate", lambda dataset_id: {"dataset_id": dataset_id}),
        ("/v1/sweeps", lambda dataset_id: sweep_body(dataset_id)),
        ("/v1/models/{bob}/importance", lambda dataset_id: {"dataset_id": dataset_id}),
        (
            "/v1/models/{bob}/explain",
            lambda dataset_id: {
                "instances": [XOR_ROW],
                "baseline": {"dataset_id": dataset_id, "rows": 4},
            },
        ),
    ],
)
def test_another_tenants_data_set_in_a_body_is_as_if_it_did_not_exist(
    client, alice, bob, path, body_for
):
    url = path.format(bob=bob.model_id)

    def answer(dataset_id: int) -> tuple[int, str]:
        response = client.post(url, json=body_for(dataset_id), headers=bearer(bob.key))
        return response.status_code, response.get_data(as_text=True).replace(str(dataset_id), "N")

    never_made = 424242
    assert answer(alice.dataset_id) == answer(never_made)
    assert answer(never_made)[0] in (200, 404, 422)


def test_another_tenants_model_to_fine_tune_is_as_if_it_did_not_exist(client, alice, bob):
    def answer(reference) -> tuple[int, str]:
        body = {"dataset_id": bob.dataset_id, "network": {"init_from": reference}}
        response = client.post("/v1/jobs", json=body, headers=bearer(bob.key))
        return response.status_code, response.get_json()["error"]["details"]

    assert answer(alice.model_id) == (422, {"network.init_from": [f"no model {alice.model_id}"]})
    assert answer(f"{alice.name}@prod")[1] == {"network.init_from": [f"no model {alice.name}@prod"]}
    assert (
        client.post(
            "/v1/jobs",
            json={"dataset_id": bob.dataset_id, "network": {"init_from": f"{bob.name}@prod"}},
            headers=bearer(bob.key),
        ).status_code
        == 202
    )


def test_two_tenants_may_use_the_same_model_name(client, sessions, settings):
    alices = holdings(client, sessions, settings, "alice", "digits")
    bobs = holdings(client, sessions, settings, "bob", "digits")
    for owner in (alices, bobs):
        shown = client.get("/v1/models/digits", headers=bearer(owner.key)).get_json()
        assert (shown["id"], shown["version"]) == (owner.model_id, 1)
        served = client.post("/v2/models/digits/infer", json=INFER_BODY, headers=bearer(owner.key))
        assert served.status_code == 200
        assert served.headers["X-Model-Id"] == str(owner.model_id)


def test_two_tenants_may_send_the_same_idempotency_key(client, sessions):
    def submit(key: str) -> tuple[dict, int]:
        headers = {**bearer(key), "Idempotency-Key": "nightly-1"}
        dataset = client.post("/v1/datasets", json={"builtin": "xor"}, headers=bearer(key))
        body = job_body(dataset.get_json()["id"])
        response = client.post("/v1/jobs", json=body, headers=headers)
        assert response.status_code == 202, response.get_json()
        return body, response.get_json()["id"]

    alice, bob = api_key(sessions, "alice"), api_key(sessions, "bob")
    (alices_body, alices_job), (_, bobs_job) = submit(alice), submit(bob)
    assert alices_job != bobs_job
    again = client.post(
        "/v1/jobs", json=alices_body, headers={**bearer(alice), "Idempotency-Key": "nightly-1"}
    )
    assert again.get_json()["id"] == alices_job
    assert again.headers["Idempotent-Replayed"] == "true"


def test_blobs_read_outside_the_orm_are_the_tenants_too(sessions, alice, bob):
    with session_for(sessions, "bob") as session:
        assert records.get_model_blob(session, alice.model_id) is None
        assert records.get_model_blob(session, bob.model_id)
        arrays, datasets = DatasetBlob.__table__.c.arrays, Dataset.__table__
        assert records.read_blob(session, arrays, datasets, alice.dataset_id) is None
        assert records.read_blob(session, arrays, datasets, bob.dataset_id)


def test_an_operation_runs_in_its_tenants_rows_only(client, sessions, settings):
    """The worker's sessions (``sessions`` here: not the API's, so not scoped by it) see only
    the operation's tenant: bob's promotion finds his own ``digits``, not alice's, and the
    alias it creates is his."""
    alices = holdings(client, sessions, settings, "alice", "digits")
    bobs = holdings(client, sessions, settings, "bob", "digits")
    headers = bearer(bobs.key)
    held_out = client.post("/v1/datasets", json={"builtin": "xor"}, headers=headers)
    promote = client.post(
        "/v1/models/digits/aliases/staging/promote",
        json={"version": 1, "dataset_id": held_out.get_json()["id"]},
        headers={**headers, "Prefer": "respond-async"},
    )
    run_operation(sessions, promote.get_json()["id"], settings, generation_for(settings))
    operation = client.get(promote.headers["Location"], headers=headers).get_json()
    assert operation["status"] == "succeeded", operation["error"]
    staging = client.get("/v1/models/digits/aliases/staging", headers=headers)
    assert staging.status_code == 200 and staging.get_json()["version"] == 1
    assert staging.get_json()["versions"] == [{"version": 1, "weight": 100, "served": 0}]
    elsewhere = client.get("/v1/models/digits/aliases/staging", headers=bearer(alices.key))
    assert elsewhere.status_code == 404
