"""Model names, versions and aliases over /v1: references, headers, aliases, deletes, and a
change seen by the next request of another app on the same database."""

import dataclasses
import importlib
import threading

import pytest
from sqlalchemy import event

from service.api.app import create_app
from service.db.models import ModelAlias
from tests.factories import assert_envelope, job_body
from worker.training import run_training

# service.api.resources binds the name ``models`` to the blueprint, so the module is imported so.
models_resource = importlib.import_module("service.api.resources.models")
XOR_ROWS = [[0, 0], [0, 1], [1, 0], [1, 1]]


@pytest.fixture
def xor_id(client) -> int:
    return client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]


@pytest.fixture
def train(client, sessions, settings, xor_id):
    """Train an XOR model by the worker's own function; returns the job as shown."""

    def train_model(model_name: str | None = None, epochs: int = 50, seed: int = 1) -> dict:
        body = job_body(xor_id, epochs=epochs)
        body["training"]["seed"] = seed
        if model_name is not None:
            body["model_name"] = model_name
        job_id = client.post("/v1/jobs", json=body).get_json()["id"]
        run_training(sessions, job_id, settings)
        return client.get(f"/v1/jobs/{job_id}").get_json()

    return train_model


def predict(client, ref: str):
    return client.post(f"/v1/models/{ref}/predict", json={"instances": XOR_ROWS})


def test_versions_count_up_per_name(client, train):
    jobs = [train("xor"), train("xor"), train("other"), train(), train("xor")]
    versions = [client.get(f"/v1/models/{job['model_id']}").get_json() for job in jobs]
    assert [(v["name"], v["version"]) for v in versions] == [
        ("xor", 1),
        ("xor", 2),
        ("other", 1),
        (None, None),
        ("xor", 3),
    ]
    assert jobs[0]["model_name"] == "xor"
    listed = client.get("/v1/models/xor/versions").get_json()
    assert [model["version"] for model in listed] == [1, 2, 3]
    assert [model["id"] for model in listed] == [jobs[i]["model_id"] for i in (0, 1, 4)]


def test_every_reference_form_answers_with_its_model(client, train):
    first, second = train("xor", seed=1), train("xor", seed=2)
    assert client.put("/v1/models/xor/aliases/production", json={"version": 1}).status_code == 200
    expected = {
        str(first["model_id"]): (first["model_id"], 1),
        "xor": (second["model_id"], 2),
        "xor:1": (first["model_id"], 1),
        "xor:2": (second["model_id"], 2),
        "xor@production": (first["model_id"], 1),
    }
    for ref, (model_id, version) in expected.items():
        response = predict(client, ref)
        assert response.status_code == 200, (ref, response.get_json())
        body = response.get_json()
        assert (body["model_id"], body["name"], body["version"]) == (model_id, "xor", version)
        assert response.headers["X-Model-Id"] == str(model_id)
        assert response.headers["X-Model-Name"] == "xor"
        assert response.headers["X-Model-Version"] == str(version)
        shown = client.get(f"/v1/models/{ref}").get_json()
        assert (shown["id"], shown["version"]) == (model_id, version)
        weights = client.get(f"/v1/models/{ref}/weights")
        assert weights.headers["X-Model-Id"] == str(model_id)
        npz = client.get(f"/v1/models/{ref}/weights?format=npz")
        assert npz.headers["X-Model-Version"] == str(version)


def test_an_unnamed_model_says_so(client, train):
    model_id = train()["model_id"]
    response = predict(client, str(model_id))
    assert response.get_json()["name"] is None and response.get_json()["version"] is None
    assert response.headers["X-Model-Id"] == str(model_id)
    assert "X-Model-Name" not in response.headers


def test_a_model_shows_its_aliases(client, train):
    train("xor")
    client.put("/v1/models/xor/aliases/production", json={"version": 1})
    client.put("/v1/models/xor/aliases/canary", json={"version": 1})
    assert client.get("/v1/models/xor:1").get_json()["aliases"] == ["canary", "production"]
    assert client.get("/v1/models/xor/versions").get_json()[0]["aliases"] == [
        "canary",
        "production",
    ]


def test_moving_and_deleting_an_alias(client, train):
    train("xor", seed=1)
    train("xor", seed=2)
    put = client.put("/v1/models/xor/aliases/production", json={"version": 1})
    assert put.get_json() == {
        "name": "xor",
        "alias": "production",
        "version": 1,
        "versions": [{"version": 1, "weight": 100, "served": 0}],
        "shadow": None,
        "changes": [],
    }
    assert predict(client, "xor@production").get_json()["version"] == 1
    client.put("/v1/models/xor/aliases/production", json={"version": 2})
    assert predict(client, "xor@production").get_json()["version"] == 2
    assert client.delete("/v1/models/xor/aliases/production").status_code == 204
    assert_envelope(predict(client, "xor@production"), 404)
    assert_envelope(client.delete("/v1/models/xor/aliases/production"), 404)


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/models/nope/aliases/production", {"version": 1}, 404, None),
        ("/v1/models/xor/aliases/production", {"version": 7}, 404, None),
        ("/v1/models/xor/aliases/Production", {"version": 1}, 422, "alias"),
        ("/v1/models/xor/aliases/9th", {"version": 1}, 422, "alias"),
        ("/v1/models/xor/aliases/production", {"version": "1"}, 422, "version"),
        ("/v1/models/xor/aliases/production", {"version": 0}, 422, "version"),
        ("/v1/models/xor/aliases/production", {}, 422, "version"),
    ],
)
def test_bad_alias_requests(client, train, path, body, status, field):
    train("xor")
    assert_envelope(client.put(path, json=body), status, field)


@pytest.mark.parametrize(
    "ref", ["Xor", "xor:", "xor:one", "xor@", "xor@Prod", "xor:1@prod", "1xor", "-1", "x" * 65]
)
def test_a_malformed_reference_is_a_404_that_says_what_a_reference_is(client, train, ref):
    train("xor")
    body = assert_envelope(predict(client, ref), 404)
    assert "is not a model reference" in body["message"]
    assert "name@alias" in body["message"]


@pytest.mark.parametrize("ref", ["nope", "xor:9", "xor@production", "99", "4294967296"])
def test_a_reference_to_nothing_is_a_404_naming_it(client, train, ref):
    train("xor")
    body = assert_envelope(predict(client, ref), 404)
    assert ref in body["message"]


def test_delete_takes_an_id_or_a_version_never_a_name_or_alias(client, train, row_counts):
    train("xor", seed=1)
    second = train("xor", seed=2)
    client.put("/v1/models/xor/aliases/production", json={"version": 1})
    before = row_counts()
    for ref in ("xor", "xor@production"):
        assert_envelope(client.delete(f"/v1/models/{ref}"), 422, "ref")
    conflict = assert_envelope(client.delete("/v1/models/xor:1"), 409)
    assert "xor@production" in conflict["message"]
    assert row_counts() == before
    assert client.delete(f"/v1/models/{second['model_id']}").status_code == 204
    assert predict(client, "xor").get_json()["version"] == 1, "the latest left is version 1"
    client.delete("/v1/models/xor/aliases/production")
    assert client.delete("/v1/models/xor:1").status_code == 204
    assert_envelope(predict(client, "xor"), 404)
    assert client.get("/v1/models/xor/versions").get_json() == []


def test_a_version_number_is_never_given_twice(client, train):
    train("xor")
    client.delete("/v1/models/xor:1")
    model_id = train("xor")["model_id"]
    assert client.get(f"/v1/models/{model_id}").get_json()["version"] == 2


@pytest.mark.parametrize(
    "name", ["Digits", "9lives", "_x", "a b", "x" * 65, "", "digits\n", "dígits", 7]
)
def test_a_bad_model_name_is_a_422_before_anything_is_stored(client, xor_id, row_counts, name):
    before = row_counts()
    body = {**job_body(xor_id), "model_name": name}
    assert_envelope(client.post("/v1/jobs", json=body), 422, "model_name")
    assert row_counts() == before
    assert_envelope(client.post("/v1/jobs/validate", json=body), 422, "model_name")


def test_versions_of_an_unknown_name_is_a_404(client):
    assert_envelope(client.get("/v1/models/nope/versions"), 404)


def test_a_change_is_seen_by_the_next_request_of_another_app(client, train, settings):
    """Two apps on one database stand for two API processes: each has its own caches."""
    train("xor", seed=1)
    train("xor", seed=2)
    other = create_app(settings).test_client()
    client.put("/v1/models/xor/aliases/production", json={"version": 1})
    for _ in range(3):
        assert predict(other, "xor@production").get_json()["version"] == 1
    client.put("/v1/models/xor/aliases/production", json={"version": 2})
    assert predict(other, "xor@production").get_json()["version"] == 2
    model_id = train("xor", seed=3)["model_id"]
    assert predict(other, "xor").get_json()["model_id"] == model_id, "a new latest version"
    client.delete(f"/v1/models/{model_id}")
    assert predict(other, "xor").get_json()["version"] == 2
    assert_envelope(predict(other, str(model_id)), 404)


def test_nothing_is_read_from_the_database_while_nothing_changes(client, train, app):
    model_id = train("xor")["model_id"]
    client.put("/v1/models/xor/aliases/production", json={"version": 1})
    refs = ("xor@production", "xor", "xor:1", str(model_id))
    for ref in refs:
        assert predict(client, ref).status_code == 200
    engine = app.extensions["backprop"].sessions.kw["bind"]
    statements = []
    requests_thread = threading.get_ident()  # the test client answers in this thread

    def record(_connection, _cursor, statement, *_args):
        # (the prediction log's thread writes its batches meanwhile: off the request path)
        if threading.get_ident() == requests_thread:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        for ref in refs * 3:
            assert predict(client, ref).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements == []


def test_a_change_is_kept_when_the_generation_cannot_move(client, train, app, caplog):
    """The alias moves in the database whatever the generation does; the failure is logged."""
    train("xor", seed=1)
    train("xor", seed=2)
    client.put("/v1/models/xor/aliases/production", json={"version": 1})

    class Unreachable:
        def current(self):
            return None

        def bump(self):
            raise ConnectionError("redis is down")

    services = app.extensions["backprop"]
    app.extensions["backprop"] = dataclasses.replace(services, generation=Unreachable())
    moved = client.put("/v1/models/xor/aliases/production", json={"version": 2})
    assert moved.status_code == 200
    assert "registry generation did not move" in caplog.text
    assert client.get("/v1/models/xor@production").get_json()["version"] == 2


def test_an_alias_set_during_a_delete_makes_it_a_409(
    client, train, sessions, monkeypatch, row_counts
):
    """Another request sets an alias between the delete's check and its commit: the foreign
    key refuses the delete, which answers 409 and deletes nothing."""
    train("xor")
    original = models_resource.deletable_row

    def checked_then_aliased(ref):
        row = original(ref)
        with sessions() as session:
            session.add(ModelAlias(name="xor", alias="production", version=1))
            session.commit()
        return row

    monkeypatch.setattr(models_resource, "deletable_row", checked_then_aliased)
    before = row_counts()
    assert_envelope(client.delete("/v1/models/xor:1"), 409)
    assert row_counts() == before
    assert predict(client, "xor@production").get_json()["version"] == 1
