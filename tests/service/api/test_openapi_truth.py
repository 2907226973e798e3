"""The OpenAPI document says what the service does (issue 10): what schemathesis found once, each
checked against the document and the answer. `make fuzz` runs schemathesis itself."""

import json

import pytest

from model_core.optimizers import OPTIMIZERS
from model_core.schedules import SCHEDULES
from model_core.specs import SCHEDULE_CHECKS
from service.api.schemas.specs import OPTIMIZER_SETTINGS, SCHEDULE_SETTINGS
from tests.factories import assert_envelope

LISTINGS = ["/v1/datasets", "/v1/jobs", "/v1/models"]


@pytest.fixture
def spec(client) -> dict:
    return client.get("/openapi.json").get_json()


def component(spec: dict, reference: dict) -> dict:
    return spec["components"]["schemas"][reference["$ref"].rsplit("/", 1)[1]]


def json_body(spec: dict, path: str, method: str = "post") -> dict:
    return spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


@pytest.mark.parametrize("method", ["put", "patch", "trace"])
def test_a_method_the_path_lacks_is_a_405_with_allow(client, method):
    response = client.open("/v1/jobs", method=method.upper())
    assert_envelope(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


@pytest.mark.parametrize("path", LISTINGS)
def test_x_pagination_is_declared_as_the_json_string_it_is(client, spec, path):
    header = spec["paths"][path]["get"]["responses"]["200"]["headers"]["X-Pagination"]
    assert header["schema"]["type"] == "string"
    sent = client.get(path).headers["X-Pagination"]
    assert json.loads(sent)["total"] == 0


def test_an_empty_dataset_body_matches_none_of_its_documented_forms(client, spec):
    forms = [component(spec, form) for form in json_body(spec, "/v1/datasets")["oneOf"]]
    assert [sorted(form["required"]) for form in forms] == [
        ["builtin"],
        ["features", "targets", "task"],
        ["features", "targets", "task"],
    ]
    assert_envelope(client.post("/v1/datasets", json={}), 422, "task")


def test_regression_targets_need_a_value_per_row(client, spec):
    regression = component(spec, json_body(spec, "/v1/datasets")["oneOf"][2])
    assert regression["properties"]["targets"]["items"]["anyOf"][1]["minItems"] == 1
    body = {"task": "regression", "features": [[0.0]], "targets": [[]]}
    assert_envelope(client.post("/v1/datasets", json=body), 422, "targets")


def test_a_network_without_layers_is_outside_the_schema_and_refused(client, spec):
    network = component(spec, json_body(spec, "/v1/jobs"))["properties"]["network"]
    assert network["anyOf"] == [{"required": ["layers"]}, {"required": ["init_from"]}]
    assert network["additionalProperties"] is False
    assert network["properties"]["layers"]["minItems"] == 1
    dataset = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()
    body = {"dataset_id": dataset["id"], "network": {}}
    assert_envelope(client.post("/v1/jobs", json=body), 422, "network.layers")


def test_null_instances_are_outside_the_schema_and_refused(client, spec):
    first_form = json_body(spec, "/v1/models/{ref}/predict")["oneOf"][0]
    instances = component(spec, first_form)["properties"]["instances"]
    assert instances["type"] == "array"
    assert "nullable" not in instances
    response = client.post("/v1/models/1/predict", json={"instances": None})
    assert_envelope(response, 422, "instances")


def test_predict_documents_its_three_json_forms(spec):
    forms = [component(spec, form) for form in json_body(spec, "/v1/models/{ref}/predict")["oneOf"]]
    assert [form["required"] for form in forms] == [["instances"], ["records"], ["columns", "data"]]
    assert [sorted(form["properties"]) for form in forms] == [
        ["instances", "routing_key"],
        ["extra", "records", "routing_key"],
        ["columns", "data", "extra", "routing_key"],
    ]
    assert all(form["additionalProperties"] is False for form in forms)


def test_evaluate_documents_its_two_forms(spec):
    forms = [
        component(spec, form) for form in json_body(spec, "/v1/models/{ref}/evaluate")["oneOf"]
    ]
    assert [form["required"] for form in forms] == [["dataset_id"], ["instances", "targets"]]
    assert all(form["additionalProperties"] is False for form in forms)


def test_delete_documents_the_references_it_takes(client, spec):
    pattern = spec["paths"]["/v1/models/{ref}"]["delete"]["parameters"][0]["schema"]["pattern"]
    assert "@" not in pattern
    assert_envelope(client.delete("/v1/models/digits"), 422, "ref")


def test_the_event_stream_documents_its_events(spec):
    responses = spec["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]
    event = responses["200"]["content"]["text/event-stream"]["schema"]
    kinds = [form["properties"]["event"]["enum"] for form in event["oneOf"]]
    assert kinds == [["epoch"], ["status"]]


def test_every_optimizer_setting_has_its_schema():
    for optimizer in OPTIMIZERS.values():
        assert set(optimizer.DEFAULTS) <= set(OPTIMIZER_SETTINGS)


def test_every_schedule_setting_has_its_schema():
    for schedule in SCHEDULES.values():
        assert {*schedule.REQUIRED, *schedule.DEFAULTS} <= set(SCHEDULE_SETTINGS)
    assert set(SCHEDULE_SETTINGS) == set(SCHEDULE_CHECKS)


def operations(spec: dict):
    """(path, method, operation) of every operation of the document."""
    methods = {"get", "post", "put", "patch", "delete"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in methods:
                yield path, method, operation


def test_every_operation_a_budget_counts_declares_its_429(spec):
    counted = [
        (p, m, op) for p, m, op in operations(spec) if not p.startswith(("/health", "/v2/health"))
    ]
    assert len(counted) > 40
    assert [f"{m} {p}" for p, m, op in counted if "429" not in op["responses"]] == []
    uncounted = [f"{m} {p}" for p, m, op in operations(spec) if "429" in op["responses"]]
    assert not [name for name in uncounted if "/health" in name]


def test_a_429_answers_as_documented(client_with, spec):
    limited = client_with(rate_limit="1/minute")
    assert limited.get("/v1/datasets").status_code == 200
    response = limited.get("/v1/datasets")
    assert_envelope(response, 429)
    documented = spec["paths"]["/v1/datasets"]["get"]["responses"]["429"]
    assert set(documented["headers"]) <= set(response.headers.keys())
