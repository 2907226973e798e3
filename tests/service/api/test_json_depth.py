"""A JSON body nested deeper than MAX_JSON_DEPTH is a 400 on every endpoint that takes a body,
before any parser (each recurses once per level) sees it."""

import re

import pytest

from service.json_depth import MAX_JSON_DEPTH
from tests.factories import assert_envelope

WRITES = {"POST", "PUT", "PATCH"}
DEEP_ARRAYS = "[" * 1000 + "]" * 1000
DEEP_OBJECTS = '{"a":' * 1000 + "1" + "}" * 1000


def writes(app) -> list[tuple[str, str]]:
    """(method, path) of every route that takes a body, its path parameters all ``1``."""
    return sorted(
        (method, re.sub(r"<[^>]+>", "1", rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods & WRITES
    )


@pytest.mark.parametrize("body", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
def test_deep_json_is_400_on_every_endpoint_that_takes_a_body(client, app, body):
    routes = writes(app)
    assert ("POST", "/v1/jobs/validate") in routes and ("POST", "/v2/models/1/infer") in routes
    for method, path in routes:
        response = client.open(path, method=method, data=body, content_type="application/json")
        assert response.status_code == 400, (path, response.get_data(as_text=True))
        if path.startswith("/v2/"):
            assert "1000 levels deep" in response.get_json()["error"]
        else:
            assert "1000 levels deep" in assert_envelope(response, 400, "json")["message"]


def test_json_as_deep_as_the_limit_is_parsed(client):
    """At the limit the body reaches the schema, whose 422 names the field."""
    body = '{"network": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}"
    response = client.post("/v1/jobs/validate", data=body, content_type="application/json")
    assert_envelope(response, 422, "network")


def test_every_operation_taking_json_documents_its_400(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    operations = [op for path in paths.values() for op in path.values() if "requestBody" in op]
    taking_json = [op for op in operations if "application/json" in op["requestBody"]["content"]]
    assert len(taking_json) >= 10
    assert all("400" in operation["responses"] for operation in taking_json)
