"""The app as a whole: OpenAPI, docs, the error envelope for framework errors, health."""

import dataclasses

import numpy as np

import model_core
from service.api.app import create_app
from service.api.events import StreamSlots
from service.settings import Settings
from tests.factories import assert_envelope
from tests.service.conftest import SharedApp

ENDPOINTS = {
    "/v1/datasets": {"get", "post"},
    "/v1/datasets/{dataset_id}": {"get", "delete"},
    "/v1/jobs": {"get", "post"},
    "/v1/jobs/validate": {"post"},
    "/v1/jobs/{job_id}": {"get"},
    "/v1/jobs/{job_id}/epochs": {"get"},
    "/v1/jobs/{job_id}/cancel": {"post"},
    "/v1/jobs/{job_id}/events": {"get"},
    "/v1/models": {"get"},
    "/v1/models/{ref}": {"get", "delete"},
    "/v1/models/{ref}/predict": {"post"},
    "/v1/models/{ref}/weights": {"get"},
    "/v1/models/{ref}/evaluate": {"post"},
    "/v1/models/{ref}/export": {"get"},
    "/v1/models/{name}/versions": {"get"},
    "/v1/models/{name}/aliases/{alias}": {"put", "get", "delete"},
    "/health/live": {"get"},
    "/health/ready": {"get"},
}

HEADER_PARAMETERS = [
    ("/v1/jobs", "post", "Idempotency-Key"),
    ("/v1/jobs/{job_id}/events", "get", "Last-Event-ID"),
]


def test_openapi_document_lists_every_endpoint(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    methods = {path: set(spec["paths"][path]) - {"parameters"} for path in ENDPOINTS}
    assert methods == ENDPOINTS
    assert "Error" in spec["components"]["schemas"]
    upload = spec["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    assert set(upload) == {"application/json", "multipart/form-data"}
    assert "422" in spec["paths"]["/v1/jobs"]["post"]["responses"]
    assert "409" in spec["paths"]["/v1/jobs/{job_id}/cancel"]["post"]["responses"]
    stream = spec["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]
    assert set(stream["content"]) == {"text/event-stream"}
    for path, method, header in HEADER_PARAMETERS:
        parameters = spec["paths"][path][method]["parameters"]
        assert (header, "header") in [(each["name"], each["in"]) for each in parameters]


def test_interactive_docs_are_served(client):
    assert client.get("/docs").status_code == 200


def test_unknown_route_and_method_use_the_envelope(client):
    assert assert_envelope(client.get("/v1/nothing"), 404)["code"] == "not_found"
    assert assert_envelope(client.put("/v1/jobs"), 405)["code"] == "method_not_allowed"


def test_live_and_ready(client):
    assert client.get("/health/live").get_json()["status"] == "ok"
    ready = client.get("/health/ready").get_json()
    assert ready["checks"]["database"] == "ok"
    assert ready["checks"]["broker"].startswith("ok")


def test_ready_is_503_naming_the_broker_when_it_is_down(settings):
    down = Settings(
        database_url=settings.database_url,
        broker_url="redis://127.0.0.1:1/0",
        broker_timeout_seconds=0.2,
    )
    error = assert_envelope(create_app(down).test_client().get("/health/ready"), 503, "broker")
    assert "database" not in error["details"]


def test_ready_is_503_naming_the_database_when_it_is_down(settings):
    down = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nothing",
        broker_url=settings.broker_url,
    )
    error = assert_envelope(create_app(down).test_client().get("/health/ready"), 503, "database")
    assert "broker" not in error["details"]


def test_ready_recovers_by_itself_when_its_dependencies_come_back(tmp_path):
    """No failure is cached: the same app answers 200 as soon as both can be reached."""
    missing = tmp_path / "not-yet"
    down = Settings(
        database_url=f"sqlite:///{missing / 'db.sqlite'}",
        broker_url=f"sqla+sqlite:///{missing / 'broker.sqlite'}",
    )
    client = create_app(down).test_client()
    error = assert_envelope(client.get("/health/ready"), 503)
    assert set(error["details"]) == {"database", "broker"}
    assert "database, broker" in error["message"]
    missing.mkdir()
    assert client.get("/health/ready").get_json()["status"] == "ok"


def tiny_model() -> model_core.Model:
    """A 2 -> 2 classifier trained for one epoch: a model the cache can size."""
    x, y = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([0, 1])
    network = {"layers": [{"units": 2, "activation": "softmax"}]}
    return model_core.train(x, y, network=network, training={"epochs": 1, "seed": 1}).model


def test_a_shared_app_is_put_back_as_new(settings):
    """What one test does to the app that the tests share is gone for the next (conftest.py)."""
    shared = SharedApp.build(dataclasses.replace(settings, rate_limit="1/minute"))
    client = shared.app.test_client()
    assert client.get("/v1/datasets").status_code == 200
    assert client.get("/v1/datasets").status_code == 429
    cached, loaded = tiny_model(), tiny_model()
    shared.app.extensions["backprop"].models.get(1, lambda: cached)
    shared.app.extensions["event_streams"] = StreamSlots(limit=0)
    shared.app.config["CHANGED_BY_A_TEST"] = True

    app = shared.reset()
    assert client.get("/v1/datasets").status_code == 200
    assert app.extensions["backprop"].models.get(1, lambda: loaded) is loaded
    app.extensions["event_streams"].take("default")  # a 503 while the limit of 0 stayed
    assert "CHANGED_BY_A_TEST" not in app.config
    assert 'status="429"' not in client.get("/metrics").get_data(as_text=True)
