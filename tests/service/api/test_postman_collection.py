"""The Postman collection of docs/postman/, read as data: newman runs it against a live server
(``make postman``, in CI); these checks need no Node.js and catch it drifting from the API: every
request names an operation of the OpenAPI document and tests its answer, and every variable it
uses is declared or set by an earlier request."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COLLECTION = json.loads((ROOT / "docs/postman/backprop.postman_collection.json").read_text())
ENVIRONMENT = json.loads((ROOT / "docs/postman/backprop.postman_environment.json").read_text())
VARIABLE = re.compile(r"\{\{(\w+)\}\}")
SET_VARIABLE = re.compile(r"pm\.collectionVariables\.set\('(\w+)'")


def requests_in(items: list[dict]) -> list[dict]:
    """The collection's requests, folders flattened, in the order a run sends them."""
    found = []
    for item in items:
        found.extend(requests_in(item["item"]) if "item" in item else [item])
    return found


REQUESTS = requests_in(COLLECTION["item"])


def script(item: dict, listen: str) -> str:
    return "\n".join(
        line
        for event in item.get("event", [])
        if event["listen"] == listen
        for line in event["script"]["exec"]
    )


def path_of(item: dict) -> str:
    return "/" + "/".join(item["request"]["url"]["path"])


def operation_pattern(openapi_path: str) -> re.Pattern:
    """``/v1/models/{ref}`` as a pattern that a path with ``{{variables}}`` in it matches."""
    return re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(openapi_path)))


@pytest.fixture
def operations(client) -> list[tuple[str, re.Pattern]]:
    spec = client.get("/openapi.json").get_json()
    return [
        (method.upper(), operation_pattern(path))
        for path, methods in spec["paths"].items()
        for method in methods
        if method != "parameters"
    ]


def test_every_request_names_an_operation_of_the_api(operations):
    unknown = [
        f"{item['name']}: {item['request']['method']} {path_of(item)}"
        for item in REQUESTS
        if not any(
            method == item["request"]["method"] and pattern.fullmatch(path_of(item))
            for method, pattern in operations
        )
    ]
    assert unknown == []


def checks_its_status(item: dict) -> bool:
    tests = script(item, "test")
    return "to.have.status(" in tests or "pm.expect(pm.response.code)" in tests


def test_every_request_tests_its_status():
    assert [item["name"] for item in REQUESTS if not checks_its_status(item)] == []


def test_every_variable_is_declared_or_set_before_it_is_used():
    known = {variable["key"] for variable in COLLECTION["variable"]}
    known |= {value["key"] for value in ENVIRONMENT["values"]}
    unset = []
    for item in REQUESTS:
        used = set(VARIABLE.findall(json.dumps(item["request"]))) - known
        unset.extend(f"{item['name']}: {{{{{name}}}}}" for name in sorted(used))
        known |= set(SET_VARIABLE.findall(script(item, "test")))
    assert unset == []


def test_request_names_are_unique_for_set_next_request():
    names = [item["name"] for item in REQUESTS]
    assert len(names) == len(set(names))


def test_the_environment_holds_the_address_and_the_key():
    assert {value["key"] for value in ENVIRONMENT["values"]} == {"baseUrl", "apiKey"}
