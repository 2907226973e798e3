"""Model contracts (issue 22): the signature every model stores, predictions by name, the
per-model OpenAPI document, and alias moves that refuse to break callers."""

import io

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from service.api.resources.models import PREDICT_REQUEST, instances_alone
from service.datasets.samples import load_sample
from tests.factories import assert_envelope
from tests.service.serving.test_models_evaluate import (
    IRIS_CLASSES,
    IRIS_COLUMNS,
    IRIS_NETWORK,
    csv_text,
    iris_csv,
    trained_model,
    upload_csv,
)

IRIS = load_sample("iris")
ROWS = IRIS.X[[0, 60, 120]]


def reordered_iris_csv(columns: list[str]) -> str:
    """The iris sample with its feature columns in the order ``columns`` names them."""
    order = [IRIS_COLUMNS.index(name) for name in columns]
    table = [[*x, label] for x, label in zip(IRIS.X[:, order].tolist(), IRIS.y, strict=True)]
    return csv_text([*columns, "species"], table)


@pytest.fixture
def iris(client, sessions) -> dict:
    """Version 1 of iris, trained on all rows (no validation split) of the named CSV."""
    dataset_id = upload_csv(client, iris_csv())
    model_id = trained_model(
        client,
        sessions,
        dataset_id,
        IRIS_NETWORK,
        model_name="iris",
        training={"epochs": 30, "seed": 3, "validation_split": 0.0},
    )
    return {"dataset_id": dataset_id, "model_id": model_id}


@pytest.fixture
def xor_id(client, sessions) -> int:
    """A model of the built-in xor sample, whose features have no names."""
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    return trained_model(client, sessions, dataset_id, epochs=5)


def predict(client, ref: str, **body):
    return client.post(f"/v1/models/{ref}/predict", json=body)


def test_a_model_stores_its_named_inputs_their_profile_and_its_classes(client, iris):
    signature = client.get("/v1/models/iris").get_json()["signature"]
    assert signature["named"] is True and signature["task"] == "classification"
    assert signature["outputs"] == {"classes": IRIS_CLASSES, "type": "string"}
    assert [feature["name"] for feature in signature["inputs"]] == IRIS_COLUMNS
    shown = {key: [feature[key] for feature in signature["inputs"]] for key in ("min", "max")}
    assert shown == {"min": IRIS.X.min(axis=0).tolist(), "max": IRIS.X.max(axis=0).tolist()}
    np.testing.assert_allclose([f["mean"] for f in signature["inputs"]], IRIS.X.mean(axis=0))
    np.testing.assert_allclose([f["std"] for f in signature["inputs"]], IRIS.X.std(axis=0))
    assert {feature["dtype"] for feature in signature["inputs"]} == {"float32"}


def test_the_profile_is_of_the_training_split_alone(client, sessions):
    dataset_id = upload_csv(client, iris_csv())
    training = {"epochs": 2, "seed": 11, "validation_split": 0.5}
    model_id = trained_model(client, sessions, dataset_id, IRIS_NETWORK, training=training)
    inputs = client.get(f"/v1/models/{model_id}").get_json()["signature"]["inputs"]
    means = np.array([feature["mean"] for feature in inputs])
    assert not np.allclose(means, IRIS.X.mean(axis=0))
    # Half of the rows: whichever half, its mean lies within the whole sample's range.
    assert np.all((IRIS.X.min(axis=0) <= means) & (means <= IRIS.X.max(axis=0)))


def test_a_model_without_feature_names_has_positional_inputs(client, xor_id):
    signature = client.get(f"/v1/models/{xor_id}").get_json()["signature"]
    assert signature["named"] is False
    assert [feature["name"] for feature in signature["inputs"]] == ["x0", "x1"]
    assert signature["outputs"] == {"classes": [0, 1], "type": "int"}
    answer = predict(client, str(xor_id), records=[{"x0": 0, "x1": 1}]).get_json()
    assert (
        answer["predictions"]
        == predict(client, str(xor_id), instances=[[0, 1]]).get_json()["predictions"]
    )


def test_records_and_columns_predict_what_instances_do(client, iris):
    by_position = predict(client, "iris", instances=ROWS.tolist()).get_json()
    records = [dict(zip(IRIS_COLUMNS[::-1], row[::-1], strict=True)) for row in ROWS.tolist()]
    by_records = predict(client, "iris", records=records).get_json()
    shuffled = [2, 0, 3, 1]
    by_columns = predict(
        client,
        "iris",
        columns=[IRIS_COLUMNS[i] for i in shuffled],
        data=ROWS[:, shuffled].tolist(),
    ).get_json()
    # every answer has a prediction id of its own; the rest is the same
    answers = [{**body, "prediction_id": None} for body in (by_position, by_records, by_columns)]
    assert answers[0] == answers[1] == answers[2]


def test_extra_features_are_refused_unless_ignored(client, iris):
    records = [{**dict(zip(IRIS_COLUMNS, row, strict=True)), "id": 7} for row in ROWS.tolist()]
    error = assert_envelope(predict(client, "iris", records=records), 422, "records[0].id")
    assert '"extra": "ignore"' in error["details"]["records[0].id"][0]
    ignored = predict(client, "iris", records=records, extra="ignore")
    assert (
        ignored.get_json()["predictions"]
        == predict(client, "iris", instances=ROWS.tolist()).get_json()["predictions"]
    )
    columns = ["id", *IRIS_COLUMNS]
    data = [[7, *row] for row in ROWS.tolist()]
    assert_envelope(predict(client, "iris", columns=columns, data=data), 422, "columns[0]")
    assert predict(client, "iris", columns=columns, data=data, extra="ignore").status_code == 200


def row_of(**changes) -> dict:
    return {**dict(zip(IRIS_COLUMNS, ROWS[0].tolist(), strict=True)), **changes}


def without(name: str) -> dict:
    return {key: value for key, value in row_of().items() if key != name}


BAD_BODIES = {
    "a missing feature": (
        {"records": [row_of(), without("petal_width")]},
        "records[1].petal_width",
    ),
    "text for a number": ({"records": [row_of(sepal_length="5.1")]}, "records[0].sepal_length"),
    "null for a number": ({"records": [row_of(petal_length=None)]}, "records[0].petal_length"),
    "a boolean for a number": ({"records": [row_of(sepal_width=True)]}, "records[0].sepal_width"),
    "a record not an object": ({"records": [row_of(), [1, 2, 3, 4]]}, "records[1]"),
    "records not a list": ({"records": {"a": 1}}, "records"),
    "no records": ({"records": []}, "records"),
    "too large a number": ({"records": [row_of(petal_width=10**400)]}, "records[0].petal_width"),
    "a column missing": ({"columns": IRIS_COLUMNS[:3], "data": [[1, 2, 3]]}, "columns"),
    "a column twice": (
        {"columns": [*IRIS_COLUMNS, "sepal_length"], "data": [[1] * 5]},
        "columns[4]",
    ),
    "data narrower than columns": ({"columns": IRIS_COLUMNS, "data": [[1, 2, 3]]}, "data"),
    "text in data": ({"columns": IRIS_COLUMNS, "data": [[1, 2, "x", 4]]}, "data[0][2]"),
    "columns without data": ({"columns": IRIS_COLUMNS}, "columns"),
    "data without columns": ({"data": [[1, 2, 3, 4]]}, "data"),
    "no form at all": ({}, "instances"),
    "two forms": ({"instances": [[1, 2, 3, 4]], "records": [row_of()]}, "records"),
    "an unknown extra": ({"records": [row_of()], "extra": "keep"}, "extra"),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_a_bad_body_is_422_naming_the_field(client, iris, case):
    body, field = BAD_BODIES[case]
    assert_envelope(predict(client, "iris", **body), 422, field)


def test_instances_alone_are_checked_as_the_schema_checks_them(client, iris):
    """The hot path takes a body of ``instances`` alone past the schema's load: a null one,
    or one beside a field the schema does not know, still gets the schema's own 422."""
    null = assert_envelope(predict(client, "iris", instances=None), 422, "instances")
    assert null["details"]["instances"] == ["Field may not be null."]
    unknown = predict(client, "iris", instances=ROWS.tolist(), colour="red")
    assert assert_envelope(unknown, 422, "colour")["details"]["colour"] == ["Unknown field."]
    assert predict(client, "iris", instances=ROWS.tolist()).status_code == 200


@pytest.mark.parametrize(
    "instances", [[[1.5, 2, 3, 4]], [{"a": 1}], "not rows", 7, [], [[None, "x"]]]
)
def test_the_schema_loads_instances_alone_as_they_are(instances):
    """What lets ``predict_body`` skip the load for such a body: the schema would return it
    unchanged, whatever the rows hold (they are checked against the model afterwards). A
    validator added to ``instances`` must make this fail, and the hot path go."""
    body = {"instances": instances}
    assert instances_alone(body)
    assert PREDICT_REQUEST.load(body) == body


def test_no_form_or_two_list_the_three_forms(client, iris):
    for body in ({}, {"instances": [[1, 2, 3, 4]], "columns": IRIS_COLUMNS, "data": [[1] * 4]}):
        error = assert_envelope(predict(client, "iris", **body), 422)
        message = " ".join(m for messages in error["details"].values() for m in messages)
        assert all(form in message for form in ("instances", "records", "columns with data"))


def test_the_signature_outlives_the_data_set(client, iris):
    before = client.get("/v1/models/iris").get_json()["signature"]
    assert client.delete(f"/v1/datasets/{iris['dataset_id']}").status_code == 204
    assert client.get("/v1/models/iris").get_json()["signature"] == before
    shuffled = ["petal_width", "id", "sepal_length", "petal_length", "sepal_width"]
    body = csv_text(shuffled, [[row[3], 9, row[0], row[2], row[1]] for row in ROWS.tolist()])
    by_name = client.post(
        "/v1/models/iris/predict",
        data=body,
        content_type="text/csv",
        headers={"Accept": "text/csv"},
    )
    assert by_name.status_code == 200, by_name.get_json()
    by_position = predict(client, "iris", instances=ROWS.tolist()).get_json()["predictions"]
    assert [line.split(",")[0] for line in by_name.text.splitlines()[1:]] == by_position


def test_v2_metadata_names_the_input_columns(client, iris):
    metadata = client.get("/v2/models/iris").get_json()
    assert metadata["inputs"][0]["parameters"] == {"feature_names": IRIS_COLUMNS}


# Alias moves


def train_version(client, sessions, csv: str) -> int:
    dataset_id = upload_csv(client, csv)
    model_id = trained_model(
        client, sessions, dataset_id, IRIS_NETWORK, epochs=2, model_name="iris"
    )
    return client.get(f"/v1/models/{model_id}").get_json()["version"]


def move(client, version: int, force: bool = False):
    query = "?force=true" if force else ""
    return client.put(f"/v1/models/iris/aliases/production{query}", json={"version": version})


def test_an_alias_refuses_a_version_that_breaks_its_callers_unless_forced(client, sessions, iris):
    assert move(client, 1).get_json()["changes"] == []
    compatible = train_version(client, sessions, iris_csv())
    moved = move(client, compatible).get_json()
    assert (moved["version"], moved["changes"]) == (compatible, [])
    swapped = [*IRIS_COLUMNS[:2], "petal_width", "petal_length"]
    breaking = train_version(client, sessions, reordered_iris_csv(swapped))
    refused = move(client, breaking)
    error = assert_envelope(refused, 409, "signature")
    assert error["details"]["signature"] == [
        "inputs[2]: petal_length -> petal_width",
        "inputs[3]: petal_width -> petal_length",
    ]
    assert client.get("/v1/models/iris@production").get_json()["version"] == compatible
    forced = move(client, breaking, force=True).get_json()
    assert (forced["version"], forced["changes"]) == (breaking, error["details"]["signature"])
    assert client.get("/v1/models/iris@production").get_json()["version"] == breaking


def test_other_classes_or_another_task_break_callers(client, sessions, iris):
    move(client, 1)
    renamed = iris_csv().replace("setosa", "iris_setosa")
    other = train_version(client, sessions, renamed)
    details = assert_envelope(move(client, other), 409)["details"]["signature"]
    assert details == ["outputs.classes[0]: setosa -> iris_setosa"]


def test_statistics_are_no_part_of_compatibility(client, sessions, iris):
    move(client, 1)
    half = iris_csv(rows=slice(0, 150, 2))
    assert move(client, train_version(client, sessions, half)).status_code == 200


# The model's own OpenAPI document


def operation(document: dict) -> dict:
    (path,) = document["paths"]
    return document["paths"][path]["post"]


def test_the_models_openapi_document_is_valid_and_exact(client, iris):
    document = client.get("/v1/models/iris/openapi.json").get_json()
    validate_openapi(document)
    assert document["openapi"] == "3.1.0"
    assert list(document["paths"]) == ["/v1/models/iris/predict"]
    body = operation(document)["requestBody"]["content"]["application/json"]["schema"]
    records_form = body["oneOf"][0]["properties"]["records"]["items"]
    assert records_form["required"] == IRIS_COLUMNS
    assert {p["type"] for p in records_form["properties"].values()} == {"number"}
    answer = operation(document)["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["predictions"]["items"] == {"enum": IRIS_CLASSES}
    assert answer["properties"]["probabilities"]["items"]["minItems"] == 3


def test_what_the_document_accepts_the_service_predicts_for(client, iris):
    document = client.get("/v1/models/iris/openapi.json").get_json()
    schemas = operation(document)
    request_schema = Draft202012Validator(
        schemas["requestBody"]["content"]["application/json"]["schema"]
    )
    answer_schema = Draft202012Validator(
        schemas["responses"]["200"]["content"]["application/json"]["schema"]
    )
    good = [
        {"records": [row_of()]},
        {"columns": IRIS_COLUMNS[::-1], "data": [ROWS[0, ::-1].tolist()]},
        {"instances": ROWS.tolist()},
    ]
    for body in good:
        assert request_schema.is_valid(body)
        response = predict(client, "iris", **body)
        assert response.status_code == 200
        answer_schema.validate(response.get_json())
    for body, _field in BAD_BODIES.values():
        assert not request_schema.is_valid(body), body


def test_a_regression_document_has_one_number_per_target(client, sessions):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3))
    body = {"task": "regression", "features": x.tolist(), "targets": (x @ [1, 2, 3]).tolist()}
    dataset_id = client.post("/v1/datasets", json=body).get_json()["id"]
    network = {"layers": [{"units": 1, "activation": "linear"}], "loss": "mse"}
    model_id = trained_model(client, sessions, dataset_id, network, epochs=2)
    document = client.get(f"/v1/models/{model_id}/openapi.json").get_json()
    validate_openapi(document)
    answer = operation(document)["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["predictions"]["items"] == {"type": "number"}
    assert document["info"]["title"] == f"model {model_id}"


def test_a_csv_body_for_a_positional_model_stays_positional(client, xor_id):
    body = io.StringIO("x1,x0\n1,0\n")
    response = client.post(
        f"/v1/models/{xor_id}/predict", data=body.getvalue(), content_type="text/csv"
    )
    assert response.status_code == 200
    assert (
        response.get_json()["predictions"]
        == predict(client, str(xor_id), instances=[[1, 0]]).get_json()["predictions"]
    )


def test_a_value_beyond_what_the_model_computes_finitely_is_422_naming_it(client, iris):
    bound = client.get("/v1/models/iris/openapi.json").get_json()
    number = operation(bound)["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    limit = number["properties"]["records"]["items"]["properties"]["sepal_width"]["maximum"]
    assert 1e30 < limit < 3.4e38
    at_limit = predict(client, "iris", records=[row_of(sepal_width=limit)])
    assert at_limit.status_code == 200 and np.isfinite(at_limit.get_json()["probabilities"]).all()
    beyond = predict(client, "iris", records=[row_of(sepal_width=3e38)])
    error = assert_envelope(beyond, 422, "records[0].sepal_width")
    assert "float32" in error["details"]["records[0].sepal_width"][0]
    columns = predict(client, "iris", columns=IRIS_COLUMNS[::-1], data=[[0, 0, 3e38, 0]])
    assert_envelope(columns, 422, "data[0][2]")
    assert_envelope(predict(client, "iris", instances=[[0, -3e38, 0, 0]]), 422, "instances[0][1]")


def test_an_infer_that_overflows_inside_the_network_has_no_answer_but_a_4xx(client, iris):
    tensor = {
        "name": "input",
        "shape": [2, 4],
        "datatype": "FP32",
        "data": [1, 2, 3, 4, 3e38, 3e38, 3e38, 3e38],
    }
    response = client.post("/v2/models/iris/infer", json={"inputs": [tensor]})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"].startswith("inputs.input[1]: the model's outputs")
