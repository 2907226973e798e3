"""POST /v1/models/{ref}/explain: the answer is model_core's explanation of the stored model,
keyed by the data set's feature names; every field a user sends is checked, a 422 naming it."""

import numpy as np
import pytest

from model_core import Model
from model_core.explanations import explain, resolve_targets
from service.db import records
from tests.factories import assert_envelope
from tests.service.operation_runs import accepted_operation, run_accepted
from tests.service.serving.test_models_evaluate import (
    IRIS_COLUMNS,
    IRIS_NETWORK,
    iris_csv,
    regression_rows,
    trained_model,
    upload_csv,
)

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.3, 1.3]]


@pytest.fixture
def iris(client, sessions) -> dict:
    """The iris CSV as a data set (its columns named) and a model trained on it, named iris."""
    dataset_id = upload_csv(client, iris_csv())
    model_id = trained_model(client, sessions, dataset_id, IRIS_NETWORK, model_name="iris")
    return {"dataset_id": dataset_id, "model_id": model_id}


def stored_model(sessions, model_id: int) -> Model:
    with sessions() as session:
        return Model.from_bytes(records.get_model_blob(session, model_id))


def explained(client, ref: str = "iris", **body) -> dict:
    """The answer to explaining ROWS (positional), with the options of ``body``."""
    response = client.post(f"/v1/models/{ref}/explain", json={"instances": ROWS, **body})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def attributions(answer: dict) -> np.ndarray:
    return np.array([list(row["attributions"].values()) for row in answer["explanations"]])


def test_integrated_gradients_by_default_are_model_cores_keyed_by_feature_name(
    client, sessions, iris
):
    answer = explained(client)

    model = stored_model(sessions, iris["model_id"])
    x = np.array(ROWS, model.dtype)
    targets, labels = resolve_targets(model, x, "predicted")
    expected = explain(model, "integrated_gradients", x, targets, model.mean[np.newaxis])
    assert answer["model_id"] == iris["model_id"] and answer["name"] == "iris"
    assert (answer["method"], answer["target"], answer["baseline"]) == (
        "integrated_gradients",
        "predicted",
        "mean",
    )
    assert (answer["steps"], answer["quadrature"]) == (64, "gauss_legendre")
    rows = answer["explanations"]
    assert [row["target"] for row in rows] == labels == model.predict(x).tolist()
    assert all(list(row["attributions"]) == IRIS_COLUMNS for row in rows)
    np.testing.assert_allclose(attributions(answer), expected.attributions, rtol=1e-12)
    np.testing.assert_allclose([row["f_x"] for row in rows], expected.values, rtol=1e-12)
    for row in rows:
        change = row["f_x"] - row["f_baseline"]
        sum_of_attributions = sum(row["attributions"].values())
        assert row["completeness_error"] == pytest.approx(abs(sum_of_attributions - change))
        assert row["completeness_error"] < 1e-4  # float32 model


def test_shapley_on_a_background_of_the_data_set_is_efficient(client, iris):
    background = {"dataset_id": iris["dataset_id"], "rows": 30, "seed": 4}
    answer = explained(client, method="shapley", baseline=background, target="virginica")

    assert answer["baseline"] == background and "steps" not in answer
    for row in answer["explanations"]:
        assert row["target"] == "virginica"
        change = row["f_x"] - row["f_baseline"]
        assert sum(row["attributions"].values()) == pytest.approx(change, abs=1e-6)


@pytest.mark.parametrize("method", ["gradient", "gradient_x_input"])
def test_gradient_methods_answer_without_baseline_fields(client, iris, method):
    answer = explained(client, method=method, target="setosa")

    assert "baseline" not in answer and "steps" not in answer
    for row in answer["explanations"]:
        assert set(row) == {"target", "f_x", "attributions"}
    gradient = attributions(explained(client, method="gradient", target="setosa"))
    if method == "gradient_x_input":
        np.testing.assert_allclose(attributions(answer), gradient * np.array(ROWS), rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "lime"}, "method"),
        ({"target": "orchid"}, "target"),
        ({"target": True}, "target"),
        ({"target": 1.5}, "target"),
        ({"baseline": [1.0, 2.0]}, "baseline"),
        ({"baseline": "median"}, "baseline"),
        ({"baseline": {"dataset_id": 1}}, "baseline.rows"),
        ({"baseline": {"dataset_id": 999, "rows": 5}}, "baseline.dataset_id"),
        ({"steps": 0}, "steps"),
        ({"steps": 1025}, "steps"),
        ({"steps": "64"}, "steps"),
        ({"quadrature": "simpson"}, "quadrature"),
        ({"method": "gradient", "steps": 8}, "steps"),
        ({"method": "gradient", "baseline": "zeros"}, "baseline"),
        ({"method": "shapley", "quadrature": "trapezoid"}, "quadrature"),
        ({"instances": [[1.0, 2.0]]}, "instances"),
    ],
)
def test_a_bad_field_is_a_422_naming_it(client, iris, body, field):
    response = client.post("/v1/models/iris/explain", json={"instances": ROWS, **body})
    assert_envelope(response, 422, field)


def test_work_beyond_the_limits_is_a_422_naming_the_field_that_makes_it(client_with, iris):
    tight = client_with(explain_max_evaluations=1000, explain_shapley_max_features=3)
    background = {"dataset_id": iris["dataset_id"], "rows": 100}
    cases = [
        ({"steps": 1000}, "steps"),
        ({"baseline": background}, "baseline.rows"),
        ({"method": "shapley"}, "method"),
    ]
    for body, field in cases:
        response = tight.post("/v1/models/iris/explain", json={"instances": ROWS, **body})
        error = assert_envelope(response, 422, field)
        assert "EXPLAIN_" in error["message"]
    many_rows = {"instances": ROWS * 200, "steps": 2}
    assert_envelope(tight.post("/v1/models/iris/explain", json=many_rows), 422, "instances")


def test_regression_targets_are_output_indices(client, sessions):
    x, y = regression_rows()
    dataset_id = client.post(
        "/v1/datasets", json={"task": "regression", "features": x, "targets": y}
    ).get_json()["id"]
    network = {"layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "linear"}]}
    model_id = trained_model(client, sessions, dataset_id, network, epochs=5)
    body = {"instances": x[:2], "target": 1}

    answer = client.post(f"/v1/models/{model_id}/explain", json=body).get_json()
    assert [row["target"] for row in answer["explanations"]] == [1, 1]
    assert list(answer["explanations"][0]["attributions"]) == [f"x{i}" for i in range(len(x[0]))]
    wrong = client.post(f"/v1/models/{model_id}/explain", json={**body, "target": 2})
    assert (
        "output 2 does not exist" in assert_envelope(wrong, 422, "target")["details"]["target"][0]
    )


def test_without_standardisation_the_mean_is_the_signatures_training_mean(client, sessions, iris):
    training = {"epochs": 5, "batch_size": "full", "seed": 1, "standardize": False}
    model_id = trained_model(client, sessions, iris["dataset_id"], IRIS_NETWORK, training=training)
    signature = client.get(f"/v1/models/{model_id}").get_json()["signature"]
    means = [feature["mean"] for feature in signature["inputs"]]

    answer = explained(client, str(model_id))
    assert answer["baseline"] == "mean"
    as_a_row = explained(client, str(model_id), baseline=means)
    assert attributions(answer) == pytest.approx(attributions(as_a_row), rel=1e-6)
    zeros = explained(client, str(model_id), baseline="zeros")
    assert attributions(zeros) != pytest.approx(attributions(answer))


def test_rows_come_in_any_of_predicts_forms(client, iris):
    by_position = attributions(explained(client))
    records = [dict(zip(IRIS_COLUMNS, row, strict=True)) for row in ROWS]
    reordered = IRIS_COLUMNS[::-1]
    for form in (
        {"records": records},
        {"columns": reordered, "data": [row[::-1] for row in ROWS]},
    ):
        response = client.post("/v1/models/iris/explain", json=form)
        assert response.status_code == 200, response.get_json()
        assert attributions(response.get_json()) == pytest.approx(by_position, rel=1e-12)
    missing = [
        {name: value for name, value in record.items() if name != "petal_width"}
        for record in records
    ]
    response = client.post("/v1/models/iris/explain", json={"records": missing})
    assert_envelope(response, 422, "records[0].petal_width")


def test_an_unknown_model_is_a_404(client):
    assert_envelope(client.post("/v1/models/nothing/explain", json={"instances": ROWS}), 404)


def test_importance_is_the_mean_absolute_attribution_over_the_sample(client, sessions, iris):
    every_row = {"dataset_id": iris["dataset_id"], "rows": 1000, "method": "gradient_x_input"}
    response = client.post("/v1/models/iris/importance", json=every_row)

    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert (answer["rows"], answer["seed"], answer["method"]) == (150, 0, "gradient_x_input")
    assert list(answer["importance"]) == IRIS_COLUMNS
    model = stored_model(sessions, iris["model_id"])
    with sessions() as session:
        x = records.get_dataset_arrays(session, iris["dataset_id"])[0].astype(model.dtype)
    targets, _ = resolve_targets(model, x, "predicted")
    expected = np.abs(explain(model, "gradient_x_input", x, targets).attributions).mean(axis=0)
    np.testing.assert_allclose(list(answer["importance"].values()), expected, rtol=1e-6)


def test_importance_samples_with_its_seed(client, iris):
    def importance(seed: int) -> dict:
        body = {"dataset_id": iris["dataset_id"], "rows": 20, "seed": seed, "steps": 8}
        return client.post("/v1/models/iris/importance", json=body).get_json()

    first, again, other = importance(1), importance(1), importance(2)
    assert first["rows"] == 20 and first["baseline"] == "mean" and first["steps"] == 8
    assert first["importance"] == again["importance"] != other["importance"]


def test_importance_refusals_name_their_field(client, client_with, iris):
    xor = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    tight = client_with(explain_max_evaluations=1000, explain_max_operation_evaluations=1000)
    cases = [
        (client, {"dataset_id": 999}, 404, None),
        (client, {"dataset_id": xor}, 422, "dataset_id"),
        (client, {"dataset_id": iris["dataset_id"], "rows": 0}, 422, "rows"),
        (
            client,
            {"dataset_id": iris["dataset_id"], "method": "gradient", "steps": 2},
            422,
            "steps",
        ),
        (tight, {"dataset_id": iris["dataset_id"], "rows": 100}, 422, "rows"),
    ]
    for answering, body, status, field in cases:
        assert_envelope(answering.post("/v1/models/iris/importance", json=body), status, field)


def test_an_importance_above_the_synchronous_limit_is_an_operation_with_the_same_answer(
    client, client_with, sessions, settings, iris
):
    body = {"dataset_id": iris["dataset_id"], "rows": 40, "steps": 16}
    synchronous = client.post("/v1/models/iris/importance", json=body).get_json()
    tight = client_with(explain_max_evaluations=40 * 16 - 1)
    operation = run_accepted(
        tight, sessions, settings, tight.post("/v1/models/iris/importance", json=body)
    )
    assert operation["kind"] == "importance" and operation["status"] == "succeeded"
    assert operation["result"] == synchronous
    assert operation["created_at"] <= operation["started_at"] <= operation["finished_at"]


def test_prefer_respond_async_makes_any_importance_an_operation(client, iris):
    body = {"dataset_id": iris["dataset_id"], "rows": 10}
    response = client.post(
        "/v1/models/iris/importance", json=body, headers={"Prefer": "respond-async, wait=5"}
    )
    accepted_operation(response)
    assert response.headers["Preference-Applied"] == "respond-async"


def test_an_importance_above_the_operation_limit_is_422_before_any_operation(
    client_with, sessions, iris
):
    tight = client_with(explain_max_evaluations=10, explain_max_operation_evaluations=99)
    body = {"dataset_id": iris["dataset_id"], "rows": 100, "method": "gradient"}
    assert_envelope(tight.post("/v1/models/iris/importance", json=body), 422, "rows")
    assert tight.get("/v1/operations").get_json() == []
