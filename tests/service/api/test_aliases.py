"""Canary splits and shadows on an alias (issue 23), through the API in-process: the split's
routing, what GET shows, the shadow's figures, and what the API refuses."""

import numpy as np
import pytest

from service.db import operations
from service.db.tenancy import session_for
from service.serving.rollout import pick_version
from tests.factories import assert_envelope
from tests.service.operation_runs import accepted_operation, run_accepted
from tests.service.serving.test_contracts import reordered_iris_csv, train_version
from tests.service.serving.test_models_evaluate import (
    IRIS_COLUMNS,
    IRIS_NETWORK,
    iris_csv,
    trained_model,
)
from worker import operations as worker_operations

ROW = [[5.9, 3.0, 5.1, 1.8]]


@pytest.fixture
def versions(client, sessions) -> list[int]:
    """Three versions of iris, of the same contract."""
    return [train_version(client, sessions, iris_csv()) for _ in range(3)]


def put(client, body: dict, alias: str = "production"):
    return client.put(f"/v1/models/iris/aliases/{alias}", json=body)


def predict(client, **options):
    headers = options.pop("headers", {})
    return client.post(
        "/v1/models/iris@production/predict", json={"instances": ROW, **options}, headers=headers
    )


def test_keys_go_to_the_version_their_hash_picks_and_each_version_counts(client, versions):
    split = [{"version": versions[0], "weight": 90}, {"version": versions[1], "weight": 10}]
    answer = put(client, {"versions": split}).get_json()
    assert answer["version"] == versions[0]
    assert [(arm["version"], arm["weight"]) for arm in answer["versions"]] == [
        (versions[0], 90),
        (versions[1], 10),
    ]
    arms = [(versions[0], 90), (versions[1], 10)]
    expected = {}
    for i in range(60):
        key = f"key-{i}"
        by_body = predict(client, routing_key=key)
        by_header = predict(client, headers={"X-Routing-Key": key})
        served = {int(r.headers["X-Model-Version"]) for r in (by_body, by_header)}
        assert served == {pick_version(arms, "iris@production", key)}
        assert by_body.get_json()["version"] == served.pop()
        expected[by_body.get_json()["version"]] = expected.get(by_body.get_json()["version"], 0) + 2
    shown = client.get("/v1/models/iris/aliases/production").get_json()
    assert {arm["version"]: arm["served"] for arm in shown["versions"]} == {
        version: expected.get(version, 0) for version in versions[:2]
    }


def test_setting_the_alias_again_starts_the_counts_anew(client, versions):
    put(client, {"version": versions[0]})
    predict(client)
    assert client.get("/v1/models/iris/aliases/production").get_json()["versions"][0]["served"] == 1
    put(client, {"version": versions[0]})
    assert client.get("/v1/models/iris/aliases/production").get_json()["versions"][0]["served"] == 0


def test_a_shadow_runs_every_request_and_agrees_as_a_direct_prediction_does(client, app, versions):
    shadow = {"version": versions[2], "sample": 1.0}
    put(client, {"version": versions[0], "shadow": shadow})
    rows = np.random.default_rng(1).uniform([4, 2, 1, 0], [8, 4.5, 7, 2.5], size=(40, 4))
    answers = []
    for row in rows.tolist():
        response = client.post("/v1/models/iris@production/predict", json={"instances": [row]})
        assert response.headers["X-Model-Version"] == str(versions[0])
        answers.append(response.get_json()["predictions"][0])
    app.extensions["backprop"].shadows.wait()
    direct = client.post(
        f"/v1/models/iris:{versions[2]}/predict", json={"instances": rows.tolist()}
    ).get_json()["predictions"]
    shown = client.get("/v1/models/iris/aliases/production").get_json()["shadow"]
    assert shown["version"] == versions[2] and shown["sample"] == 1.0
    assert (shown["requests_compared"], shown["requests_dropped"]) == (40, 0)
    assert shown["rows_compared"] == 40
    agreement = np.mean(np.array(direct) == np.array(answers))
    assert shown["agreement"] == pytest.approx(agreement)


def test_versions_in_a_split_or_a_shadow_cannot_be_deleted(client, versions):
    split = [{"version": versions[0], "weight": 1}, {"version": versions[1], "weight": 1}]
    put(client, {"versions": split, "shadow": {"version": versions[2]}})
    for version in versions:
        error = assert_envelope(client.delete(f"/v1/models/iris:{version}"), 409)
        assert "iris@production" in error["message"]
    client.delete("/v1/models/iris/aliases/production")
    assert client.delete(f"/v1/models/iris:{versions[1]}").status_code == 204


BAD_BODIES = {
    "both forms": ({"version": 1, "versions": [{"version": 2, "weight": 1}]}, "version"),
    "neither": ({}, "version"),
    "five versions": ({"versions": [{"version": v, "weight": 1} for v in range(1, 6)]}, "versions"),
    "a weight of 0": ({"versions": [{"version": 1, "weight": 0}]}, "versions[0].weight"),
    "a version twice": (
        {"versions": [{"version": 1, "weight": 1}, {"version": 1, "weight": 2}]},
        "versions[1].version",
    ),
    "a shadow that answers": ({"version": 1, "shadow": {"version": 1}}, "shadow.version"),
    "a sample of 0": ({"version": 1, "shadow": {"version": 2, "sample": 0}}, "shadow.sample"),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_a_bad_split_is_422_naming_the_field(client, versions, case):
    body, field = BAD_BODIES[case]
    assert_envelope(put(client, body), 422, field)


def test_an_unknown_version_in_a_split_is_404(client, versions):
    split = [{"version": versions[0], "weight": 1}, {"version": 99, "weight": 1}]
    assert_envelope(put(client, {"versions": split}), 404)


def test_the_contract_check_covers_every_version_of_a_split(client, sessions, versions):
    put(client, {"version": versions[0]})
    swapped = [*IRIS_COLUMNS[:2], "petal_width", "petal_length"]
    breaking = train_version(client, sessions, reordered_iris_csv(swapped))
    split = [{"version": versions[0], "weight": 90}, {"version": breaking, "weight": 10}]
    error = assert_envelope(put(client, {"versions": split}), 409, "signature")
    assert (
        error["details"]["signature"][0]
        == f"version {breaking}: inputs[2]: petal_length -> petal_width"
    )
    assert put(client, {"versions": split}, alias="production?force=true").status_code == 200


# The promotion gate


@pytest.fixture
def held_out(client) -> int:
    """Iris rows as a data set of their own: no version trained on it."""
    from tests.service.serving.test_models_evaluate import upload_csv

    return upload_csv(client, iris_csv(rows=slice(0, 150, 3)))


def promote(client, body: dict, headers: dict | None = None):
    return client.post("/v1/models/iris/aliases/production/promote", json=body, headers=headers)


def accuracy(client, version: int, dataset_id: int) -> float:
    body = {"dataset_id": dataset_id}
    return client.post(f"/v1/models/iris:{version}/evaluate", json=body).get_json()["accuracy"]


def test_a_version_that_meets_every_requirement_takes_the_alias(client, versions, held_out):
    put(client, {"version": versions[0]})
    score = accuracy(client, versions[1], held_out)
    body = {
        "version": versions[1],
        "dataset_id": held_out,
        "require": {"accuracy": {"min": score - 0.01}, "loss": {"max": 100}},
    }
    answer = promote(client, body)
    assert answer.status_code == 200, answer.get_json()
    shown = answer.get_json()
    assert shown["alias"]["version"] == versions[1]
    assert shown["candidate"]["evaluation"]["accuracy"] == score
    assert shown["current"] is None


def test_a_version_below_a_threshold_is_refused_with_its_figures(client, versions, held_out):
    put(client, {"version": versions[0]})
    score = accuracy(client, versions[1], held_out)
    body = {
        "version": versions[1],
        "dataset_id": held_out,
        "require": {"accuracy": {"min": score + 0.01}},
    }
    error = assert_envelope(promote(client, body), 409, "require.accuracy.min")
    assert error["details"]["candidate.accuracy"] == [str(score)]
    assert client.get("/v1/models/iris@production").get_json()["version"] == versions[0]


def test_not_worse_than_current_compares_both_on_the_same_rows(
    client, sessions, versions, held_out
):
    dataset_id = client.get(f"/v1/models/iris:{versions[0]}").get_json()["dataset_id"]
    trained = trained_model(
        client, sessions, dataset_id, IRIS_NETWORK, epochs=60, model_name="iris"
    )
    better, worse = client.get(f"/v1/models/{trained}").get_json()["version"], versions[0]
    scores = {version: accuracy(client, version, held_out) for version in (better, worse)}
    assert scores[better] > scores[worse], scores
    put(client, {"version": better})
    body = {
        "version": worse,
        "dataset_id": held_out,
        "require": {"accuracy": {"min": 0}},
        "not_worse_than_current": True,
    }
    error = assert_envelope(promote(client, body), 409, "not_worse_than_current.accuracy")
    assert error["details"]["current.accuracy"] == [str(scores[better])]
    put(client, {"version": worse})
    answer = promote(client, {**body, "version": better}).get_json()
    assert answer["current"]["evaluation"]["accuracy"] == scores[worse]
    assert answer["alias"]["version"] == better


def test_a_gate_on_the_candidates_training_data_or_a_foreign_figure_is_422(client, versions):
    trained_on = client.get(f"/v1/models/iris:{versions[1]}").get_json()["dataset_id"]
    body = {"version": versions[1], "dataset_id": trained_on}
    assert_envelope(promote(client, body), 422, "dataset_id")
    body = {"version": versions[1], "dataset_id": trained_on + 1000, "require": {"r2": {"min": 0}}}
    assert_envelope(promote(client, body), 404)
    assert_envelope(promote(client, {**body, "require": {"speed": {"min": 1}}}), 422)


def test_v2_infer_and_csv_predictions_honour_the_split_by_header(client, versions):
    split = [{"version": versions[0], "weight": 50}, {"version": versions[1], "weight": 50}]
    put(client, {"versions": split})
    arms = [(versions[0], 50), (versions[1], 50)]
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW[0]}
    for key in ("a", "b", "c", "d", "e", "f"):
        expected = str(pick_version(arms, "iris@production", key))
        headers = {"X-Routing-Key": key}
        infer = client.post(
            "/v2/models/iris@production/infer", json={"inputs": [tensor]}, headers=headers
        )
        assert infer.headers["X-Model-Version"] == expected
        csv = client.post(
            "/v1/models/iris@production/predict",
            data=",".join(IRIS_COLUMNS) + "\n" + ",".join(map(str, ROW[0])) + "\n",
            content_type="text/csv",
            headers=headers,
        )
        assert csv.headers["X-Model-Version"] == expected


def test_a_gate_on_a_large_data_set_is_an_operation_that_moves_the_alias(
    client, client_with, sessions, settings, versions, held_out
):
    put(client, {"version": versions[0]})
    score = accuracy(client, versions[1], held_out)
    body = {"version": versions[1], "dataset_id": held_out, "require": {"accuracy": {"min": 0}}}
    small_limit = client_with(gate_sync_rows=10)
    response = promote(small_limit, {**body, "not_worse_than_current": True})
    assert client.get("/v1/models/iris@production").get_json()["version"] == versions[0]
    operation = run_accepted(client, sessions, settings, response)
    assert (operation["kind"], operation["status"], operation["error"]) == (
        "promotion",
        "succeeded",
        None,
    )
    result = operation["result"]
    assert result["alias"]["version"] == versions[1] and result["alias"]["changes"] == []
    assert result["candidate"]["evaluation"]["accuracy"] == score
    assert result["current"]["version"] == versions[0]
    assert client.get("/v1/models/iris@production").get_json()["version"] == versions[1]


def test_a_gate_operation_that_fails_ends_with_the_409_the_request_would_have_had(
    client, sessions, settings, versions, held_out
):
    put(client, {"version": versions[0]})
    score = accuracy(client, versions[1], held_out)
    body = {"version": versions[1], "dataset_id": held_out, "require": {"accuracy": {"min": 2}}}
    synchronous = assert_envelope(promote(client, body), 409, "require.accuracy.min")
    asynchronous = promote(client, body, headers={"Prefer": "respond-async"})
    operation = run_accepted(client, sessions, settings, asynchronous)
    assert operation["status"] == "failed" and operation["result"] is None
    assert operation["error"] == {"status": 409, **synchronous}
    assert operation["error"]["details"]["candidate.accuracy"] == [str(score)]
    assert client.get("/v1/models/iris@production").get_json()["version"] == versions[0]


def test_a_gate_operation_leaves_an_alias_that_moved_since_the_request(
    client, sessions, settings, versions, held_out
):
    put(client, {"version": versions[0]})
    body = {"version": versions[1], "dataset_id": held_out, "require": {"accuracy": {"min": 0}}}
    response = promote(client, body, headers={"Prefer": "respond-async"})
    put(client, {"version": versions[2]})
    operation = run_accepted(client, sessions, settings, response)
    assert operation["status"] == "failed"
    assert operation["error"]["status"] == 409 and operation["error"]["code"] == "conflict"
    assert "changed since" in operation["error"]["message"]
    assert client.get("/v1/models/iris@production").get_json()["version"] == versions[2]


def test_a_gate_attempt_that_lost_its_claim_moves_nothing(
    client, sessions, settings, versions, held_out
):
    put(client, {"version": versions[0]})
    body = {"version": versions[1], "dataset_id": held_out, "require": {"accuracy": {"min": 0}}}
    operation_id = accepted_operation(promote(client, body, headers={"Prefer": "respond-async"}))
    with sessions() as session:
        first = operations.claim_operation(session, operation_id, -1, 3)  # its lease expired
        operations.claim_operation(session, operation_id, 30, 3)  # another worker holds it
    with session_for(sessions, first.tenant) as session:
        result = worker_operations.run_promotion(session, first.request, settings)
        assert not worker_operations.end(session, first, {"result": result})
    assert client.get("/v1/models/iris@production").get_json()["version"] == versions[0]
    assert client.get(f"/v1/operations/{operation_id}").get_json()["status"] == "running"
