"""Warm-up and drain (issue 27): what /health/ready waits for in `backprop api`'s processes, and
which models a process warms. The server's own part (slots marked warming before each fork,
SIGTERM's drain) runs for real in tests/integration/test_balancer.py."""

import dataclasses
import os

import pytest

from service.api.readiness import AlwaysReady, ServerReadiness, start_warm_up, warm_up
from tests.factories import assert_envelope
from tests.service.serving.test_contracts import train_version
from tests.service.serving.test_models_evaluate import iris_csv


def test_a_server_is_ready_once_every_slot_has_reported():
    readiness = ServerReadiness(2)
    assert readiness.problem() == "warming up: 0 of 2 processes have loaded their models"
    readiness.mark_warming(1)
    readiness.mark_warming(2)
    assert readiness.problem() == "warming up: 0 of 2 processes have loaded their models"
    readiness.mark_ready(1)
    assert readiness.problem() == "warming up: 1 of 2 processes have loaded their models"
    readiness.mark_ready(2)
    assert readiness.problem() is None
    readiness.mark_warming(1)  # a worker died: its successor warms up in the same slot
    assert readiness.problem() == "warming up: 1 of 2 processes have loaded their models"


def test_a_draining_server_is_not_ready_whatever_its_slots_say():
    readiness = ServerReadiness(1)
    readiness.mark_ready(1)
    readiness.start_draining()
    assert readiness.problem() == "draining: the server is stopping"


def test_what_a_forked_process_reports_is_seen_by_its_parent():
    """The memory is mapped before the fork, as the server's main process does."""
    readiness = ServerReadiness(1)
    slot = 1
    readiness.mark_warming(slot)
    child = os.fork()
    if child == 0:
        readiness.mark_ready(slot)
        os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    assert readiness.problem() is None


@pytest.mark.parametrize("path", ["/health/ready", "/v2/health/ready"])
def test_ready_is_503_while_warming_or_draining_and_live_stays_200(app, client, path):
    readiness = ServerReadiness(1)
    app.extensions["readiness"] = readiness
    slot = 1
    readiness.mark_warming(slot)
    assert client.get(path).status_code == 503
    assert "warming up: 0 of 1" in client.get(path).get_data(as_text=True)
    readiness.mark_ready(slot)
    assert client.get(path).status_code == 200
    readiness.start_draining()
    assert "draining" in client.get(path).get_data(as_text=True)
    assert client.get(path).status_code == 503
    assert client.get("/health/live").status_code == 200


def test_ready_names_what_it_waits_for(app, client):
    app.extensions["readiness"] = ServerReadiness(1)
    error = assert_envelope(client.get("/health/ready"), 503, "serving")
    assert error["message"] == ("Not ready: warming up: 0 of 1 processes have loaded their models.")


def test_an_app_outside_backprop_api_waits_for_nothing(app):
    assert isinstance(app.extensions["readiness"], AlwaysReady)


@pytest.fixture
def iris_versions(client, sessions) -> list[int]:
    """Three versions of iris: 1 and 2 split by iris@production, 3 under no alias."""
    versions = [train_version(client, sessions, iris_csv()) for _ in range(3)]
    split = [{"version": versions[0], "weight": 90}, {"version": versions[1], "weight": 10}]
    answer = client.put("/v1/models/iris/aliases/production", json={"versions": split})
    assert answer.status_code == 200, answer.get_json()
    return versions


def model_ids(client, versions: list[int]) -> list[int]:
    return [client.get(f"/v1/models/iris:{v}").get_json()["id"] for v in versions]


def with_settings(app, **changes):
    services = app.extensions["backprop"]
    return dataclasses.replace(services, settings=dataclasses.replace(services.settings, **changes))


def test_by_default_every_version_an_alias_serves_is_warmed(app, client, iris_versions):
    ids = model_ids(client, iris_versions)
    services = app.extensions["backprop"]
    services.models.clear()  # what reading them through the API left there
    assert sorted(warm_up(services)) == sorted(ids[:2])
    cached = [model_id for model_id in ids if services.models.get(model_id, lambda: None)]
    assert cached == ids[:2]


def test_at_most_warm_models_max_are_warmed(app, client, iris_versions):
    assert len(warm_up(with_settings(app, warm_models_max=1))) == 1
    assert warm_up(with_settings(app, warm_models_max=0)) == []


def test_warm_models_names_them_in_their_tenant_and_skips_what_names_nothing(
    app, client, iris_versions, caplog
):
    ids = model_ids(client, iris_versions)
    named = f"default/iris:{iris_versions[2]},default/iris@staging,other/iris:1,default/nope:x"
    assert warm_up(with_settings(app, warm_models=named)) == [ids[2]]
    assert "default/iris@staging names no model" in caplog.text
    assert "other/iris:1 names no model" in caplog.text
    assert "default/nope:x names no model" in caplog.text


def test_a_worker_reports_ready_once_its_warm_up_is_done(app, client, iris_versions):
    ids = model_ids(client, iris_versions)
    app.extensions["backprop"].models.clear()
    readiness = ServerReadiness(1)
    slot = 1
    readiness.mark_warming(slot)
    start_warm_up(app, readiness, slot).join(timeout=60)
    assert readiness.problem() is None
    assert app.extensions["backprop"].models.get(ids[0], lambda: None) is not None


def test_a_worker_runs_its_last_step_after_the_warm_up_and_before_it_reports_ready(
    app, client, iris_versions
):
    ids = model_ids(client, iris_versions)
    app.extensions["backprop"].models.clear()
    readiness = ServerReadiness(1)
    slot = 1
    readiness.mark_warming(slot)
    seen = []

    def before_ready() -> None:
        warmed = app.extensions["backprop"].models.get(ids[0], lambda: None) is not None
        seen.append((warmed, readiness.problem()))

    start_warm_up(app, readiness, slot, before_ready).join(timeout=60)
    assert seen == [(True, "warming up: 0 of 1 processes have loaded their models")]
    assert readiness.problem() is None
