"""The prediction routes (``/v1/models/{ref}/predict``, ``/v2/models/{name}[/versions/{v}]/infer``)
dispatched straight to their function, past flask-smorest's wrappers (service/api/app.py,
``dispatch_directly``): the OpenAPI document is unchanged, and every hook still runs on them,
with every feature on (keys, tenants, rate limits, the prediction log, a canary split, body
limits, JSON depth, the request id and its log line)."""

import dataclasses

import pytest
from flask import Flask

import service.api.app as app_module
from service.api.resources import DIRECT_VIEWS
from service.api.resources.models import predict
from service.api.resources.v2 import model_infer
from service.serving.rollout import pick_version
from tests.factories import api_key, assert_envelope, bearer, job_body
from tests.service.api.test_auth import access_token
from tests.service.api.test_logs import log_lines, request_lines  # noqa: F401 (a fixture)
from tests.service.api.test_prediction_log import flush, logged_rows
from tests.service.conftest import MAX_REQUEST_BYTES
from tests.service.conftest import testing_app as app_of  # not collected as a test
from worker.training import run_training

ROW = [0.0, 1.0]
V1 = "/v1/models/xor@prod/predict"
V2 = "/v2/models/xor@prod/infer"
ROUTES = (V1, V2)
BODIES = {
    V1: {"instances": [ROW]},
    V2: {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": ROW}]},
}
HALVES = [(1, 50), (2, 50)]


@pytest.fixture
def settings(settings):
    """Every feature on: keys, the prediction log (every request), rate limits (counted)."""
    return dataclasses.replace(
        settings, auth="required", prediction_log="on", prediction_log_sample=1.0
    )


@pytest.fixture
def alice(client, sessions, settings) -> dict[str, str]:
    """Alice's admin key's headers; her two versions of ``xor`` and ``xor@prod`` split 50/50
    between them."""
    headers = bearer(api_key(sessions, "alice", "admin"))
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}, headers=headers)
    for _ in range(2):
        body = {**job_body(dataset_id.get_json()["id"], epochs=20), "model_name": "xor"}
        job = client.post("/v1/jobs", json=body, headers=headers)
        run_training(sessions, job.get_json()["id"], settings)
    split = {"versions": [{"version": v, "weight": w} for v, w in HALVES]}
    assert client.put("/v1/models/xor/aliases/prod", json=split, headers=headers).status_code == 200
    return headers


def test_the_prediction_routes_are_dispatched_to_their_functions(app):
    endpoints = {
        rule.rule: app.view_functions[rule.endpoint]
        for rule in app.url_map.iter_rules()
        if rule.rule.endswith(("/predict", "/infer"))
    }
    assert endpoints == {
        "/v1/models/<ref>/predict": predict,
        "/v2/models/<name>/infer": model_infer,
        "/v2/models/<name>/versions/<version>/infer": model_infer,
    }
    assert set(DIRECT_VIEWS.values()) == {predict, model_infer}


def test_the_openapi_document_is_byte_for_byte_the_one_without_direct_dispatch(
    app, settings, monkeypatch
):
    monkeypatch.setattr(app_module, "dispatch_directly", lambda _app, _views: None)
    through_smorest: Flask = app_of(settings)
    assert through_smorest.view_functions["models.ModelPrediction"].view_class is not None
    direct = app.test_client().get("/openapi.json")
    assert direct.status_code == 200
    assert direct.data == through_smorest.test_client().get("/openapi.json").data


@pytest.mark.parametrize("route", ROUTES)
def test_the_fast_routes_answer_as_through_flask_smorest(client, alice, route):
    answer = client.post(route, json=BODIES[route], headers=alice)
    assert answer.status_code == 200, answer.get_json()
    assert answer.headers["X-Model-Name"] == "xor"
    assert len(answer.headers["X-Prediction-Id"]) == 32


def test_bad_rows_are_a_422_naming_the_field_on_v1_and_the_protocols_400_on_v2(client, alice):
    ragged = client.post(V1, json={"instances": [[0.0, 1.0, 2.0]]}, headers=alice)
    assert_envelope(ragged, 422, "instances")
    neither = client.post(V1, json={"rows": [ROW]}, headers=alice)
    assert_envelope(neither, 422, "rows")  # the unknown field
    wrong = client.post(V2, json={"inputs": [{"name": "input"}]}, headers=alice)
    assert wrong.status_code == 400 and set(wrong.get_json()) == {"error"}


@pytest.mark.parametrize("route", ROUTES)
def test_keys_no_key_a_wrong_key_or_an_access_token_is_a_401_a_read_key_predicts(
    client, sessions, alice, route
):
    for headers in ({}, bearer("bpk_1_" + "0" * 40)):
        refused = client.post(route, json=BODIES[route], headers=headers)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    reader = api_key(sessions, "alice", "read")
    token = access_token(client, reader)  # read scope, GETs only
    assert client.post(f"{route}?access_token={token}", json=BODIES[route]).status_code == 401
    assert client.post(route, json=BODIES[route], headers=bearer(reader)).status_code == 200


@pytest.mark.parametrize("route", ROUTES)
def test_another_tenants_model_is_not_found(client, sessions, alice, route):
    bob = bearer(api_key(sessions, "bob", "admin"))
    assert client.post(route, json=BODIES[route], headers=bob).status_code == 404
    by_version = "/v2/models/xor/versions/1/infer"
    assert client.post(by_version, json=BODIES[V2], headers=bob).status_code == 404
    assert client.post(by_version, json=BODIES[V2], headers=alice).status_code == 200


def test_the_prediction_budget_is_a_429_with_retry_after(client_with, sessions, alice):
    limited = client_with(auth="required", predict_rate_limit="2/minute")
    answers = [limited.post(route, json=BODIES[route], headers=alice) for route in ROUTES]
    assert [answer.status_code for answer in answers] == [200, 200]  # one budget for both
    refused = {route: limited.post(route, json=BODIES[route], headers=alice) for route in ROUTES}
    for answer in refused.values():
        assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
    assert "PREDICT_RATE_LIMIT" in assert_envelope(refused[V1], 429)["message"]
    assert "PREDICT_RATE_LIMIT" in refused[V2].get_json()["error"]


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_over_the_limit_is_a_413_and_one_nested_too_deep_a_400(client, alice, route):
    padding = " " * (MAX_REQUEST_BYTES + 1)
    oversized = client.post(
        route, data=padding + "{}", content_type="application/json", headers=alice
    )
    assert oversized.status_code == 413
    nested = "[" * 600 + "]" * 600
    deep = client.post(route, data=nested, content_type="application/json", headers=alice)
    assert deep.status_code == 400 and "nests" in deep.get_data(as_text=True)


@pytest.mark.parametrize("route", ROUTES)
def test_the_request_id_is_echoed_and_logged_with_the_tenant(client, alice, log_lines, route):  # noqa: F811
    answer = client.post(route, json=BODIES[route], headers={**alice, "X-Request-ID": "fast-1"})
    assert answer.headers["X-Request-ID"] == "fast-1"
    (line,) = [line for line in request_lines(log_lines()) if line.get("request_id") == "fast-1"]
    assert (line["method"], line["status"], line["tenant"]) == ("POST", 200, "alice")
    assert line["route"].endswith(("/predict", "/infer"))


def test_every_answer_is_in_the_prediction_log_with_its_split_arm(client, sessions, alice):
    answers = {
        route: [
            client.post(route, json=BODIES[route], headers={**alice, "X-Routing-Key": f"k{i}"})
            for i in range(16)
        ]
        for route in ROUTES
    }
    flush(client)  # the rest: the log's thread may have written some already
    assert logged_rows(sessions) == 32
    for route, routed in answers.items():
        versions = set()
        for i, answer in enumerate(routed):
            version = int(answer.headers["X-Model-Version"])
            assert version == pick_version(HALVES, "xor@prod", f"k{i}"), route
            versions.add(version)
            logged = client.get(
                f"/v1/predictions/{answer.headers['X-Prediction-Id']}", headers=alice
            ).get_json()
            assert (logged["alias"], logged["split_arm"]) == ("prod", str(version))
        assert versions == {1, 2}, route
