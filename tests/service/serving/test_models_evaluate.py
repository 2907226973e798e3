"""POST /v1/models/{ref}/evaluate, and CSV in and out of POST /v1/models/{ref}/predict."""

import csv
import io

import numpy as np
import pytest
from sklearn import metrics

from service.datasets.samples import load_sample
from tests.factories import assert_envelope, job_body
from worker.training import run_training

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]
IRIS_NETWORK = {
    "layers": [{"units": 6, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
}
REGRESSION_NETWORK = {
    "layers": [{"units": 6, "activation": "tanh"}, {"units": 2, "activation": "linear"}],
}


def csv_text(header: list[str], rows) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


def iris_csv(columns: list[str] = IRIS_COLUMNS, rows: slice = slice(None)) -> str:
    """The built-in iris sample as a CSV file whose header names its columns."""
    sample = load_sample("iris")
    table = [[*x, label] for x, label in zip(sample.X[rows].tolist(), sample.y[rows], strict=True)]
    return csv_text([*columns, "species"], table)


def upload_csv(client, text: str, task: str = "classification", target: str = "species") -> int:
    data = {"task": task, "target": target, "file": (io.BytesIO(text.encode()), "data.csv")}
    response = client.post("/v1/datasets", data=data, content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def trained_model(
    client, sessions, dataset_id: int, network: dict | None = None, epochs: int = 40, **fields
) -> int:
    """The id of a model trained by the worker's own function (no worker process here)."""
    body = {**job_body(dataset_id, epochs=epochs, network=network), **fields}
    job_id = client.post("/v1/jobs", json=body).get_json()["id"]
    run_training(sessions, job_id)
    job = client.get(f"/v1/jobs/{job_id}").get_json()
    assert job["status"] == "succeeded", job["error"]
    return job["model_id"]


@pytest.fixture
def iris(client, sessions) -> dict:
    """The iris CSV as a data set (its columns named) and a model trained on it, named iris."""
    dataset_id = upload_csv(client, iris_csv())
    model_id = trained_model(client, sessions, dataset_id, IRIS_NETWORK, model_name="iris")
    return {"dataset_id": dataset_id, "model_id": model_id}


def test_above_max_confusion_classes_the_matrix_lists_the_pairs_that_occur(client_with, iris):
    response = evaluate(client_with(max_confusion_classes=2), "iris", dataset_id=iris["dataset_id"])

    assert response.status_code == 200, response.get_json()
    matrix = response.get_json()["confusion_matrix"]
    dense = evaluate(client_with(max_confusion_classes=3), "iris", dataset_id=iris["dataset_id"])
    counts = dense.get_json()["confusion_matrix"]["counts"]
    assert set(matrix) == {"labels", "entries"} and matrix["labels"] == IRIS_CLASSES
    assert matrix["entries"] == [
        [i, j, count] for i, row in enumerate(counts) for j, count in enumerate(row) if count
    ]


def regression_rows(n_rows: int = 60) -> tuple[list, list]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n_rows, 3))
    y = np.column_stack([x @ [1.0, -2.0, 0.5] + 3, np.sin(x[:, 0]) - x[:, 2]])
    return x.tolist(), (y + rng.normal(0, 0.2, size=y.shape)).tolist()


@pytest.fixture
def regression(client, sessions) -> dict:
    """A two-output regression model on a JSON data set (its columns unnamed)."""
    x, y = regression_rows()
    body = {"task": "regression", "features": x, "targets": y}
    dataset_id = client.post("/v1/datasets", json=body).get_json()["id"]
    model_id = trained_model(client, sessions, dataset_id, REGRESSION_NETWORK)
    return {"dataset_id": dataset_id, "model_id": model_id, "x": x, "y": y}


def predicted(client, ref, x: list) -> dict:
    """/predict's JSON answers for rows ``x``, 50 rows (MAX_PREDICT_ROWS here) at a time."""
    answers = [
        client.post(f"/v1/models/{ref}/predict", json={"instances": x[i : i + 50]}).get_json()
        for i in range(0, len(x), 50)
    ]
    keys = [key for key in ("predictions", "probabilities") if key in answers[0]]
    return {key: sum((answer[key] for answer in answers), []) for key in keys}


def evaluate(client, ref, **body):
    return client.post(f"/v1/models/{ref}/evaluate", json=body)


# -- evaluate -------------------------------------------------------------------------------


def test_a_classifier_evaluated_on_a_data_set_agrees_with_sklearn_on_its_predictions(client, iris):
    response = evaluate(client, "iris", dataset_id=iris["dataset_id"])

    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    sample = load_sample("iris")
    y_pred = predicted(client, "iris", sample.X.tolist())["predictions"]
    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(sample.y, y_pred))
    assert report["accuracy"] > 0.6
    precision, recall, _, support = metrics.precision_recall_fscore_support(
        sample.y, y_pred, labels=IRIS_CLASSES, zero_division=0
    )
    assert [c["label"] for c in report["per_class"]] == IRIS_CLASSES
    assert [c["precision"] for c in report["per_class"]] == pytest.approx(precision)
    assert [c["recall"] for c in report["per_class"]] == pytest.approx(recall)
    assert [c["support"] for c in report["per_class"]] == support.tolist() == [50, 50, 50]
    expected = metrics.confusion_matrix(sample.y, y_pred, labels=IRIS_CLASSES)
    assert report["confusion_matrix"] == {"labels": IRIS_CLASSES, "counts": expected.tolist()}
    assert report["loss_function"] == "cross_entropy"
    assert report["n_samples"] == 150 and report["dataset_id"] == iris["dataset_id"]
    assert "mse" not in report and "per_output" not in report


def test_evaluate_says_which_model_answered(client, iris):
    response = evaluate(client, "iris@latest", dataset_id=iris["dataset_id"])
    assert_envelope(response, 404)  # no such alias yet
    client.put("/v1/models/iris/aliases/production", json={"version": 1})

    response = evaluate(client, "iris@production", dataset_id=iris["dataset_id"])

    body = response.get_json()
    assert (body["model_id"], body["name"], body["version"]) == (iris["model_id"], "iris", 1)
    assert response.headers["X-Model-Id"] == str(iris["model_id"])
    assert (response.headers["X-Model-Name"], response.headers["X-Model-Version"]) == ("iris", "1")


def test_a_classifier_evaluated_on_inline_rows(client, sessions):
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    model_id = trained_model(client, sessions, dataset_id, epochs=500)

    response = evaluate(client, model_id, instances=[[0, 0], [0, 1], [1, 1]], targets=[0, 1, 1])

    report = response.get_json()
    assert response.status_code == 200, report
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["confusion_matrix"] == {"labels": [0, 1], "counts": [[1, 0], [1, 1]]}
    assert [c["precision"] for c in report["per_class"]] == [0.5, 1.0]
    assert [c["recall"] for c in report["per_class"]] == [1.0, 0.5]
    assert report["dataset_id"] is None and report["model_id"] == model_id
    assert (report["name"], report["version"]) == (None, None)
    assert "X-Model-Name" not in response.headers


def test_a_regression_agrees_with_sklearn_by_data_set_and_inline(client, regression):
    model_id, x, y = regression["model_id"], regression["x"], regression["y"]
    y_pred = predicted(client, model_id, x)["predictions"]

    by_dataset = evaluate(client, model_id, dataset_id=regression["dataset_id"]).get_json()
    inline = evaluate(client, model_id, instances=x[:50], targets=y[:50]).get_json()

    assert by_dataset["mse"] == pytest.approx(metrics.mean_squared_error(y, y_pred))
    assert by_dataset["mae"] == pytest.approx(metrics.mean_absolute_error(y, y_pred))
    assert by_dataset["r2"] == pytest.approx(metrics.r2_score(y, y_pred))
    r2 = metrics.r2_score(y, y_pred, multioutput="raw_values")
    assert [o["r2"] for o in by_dataset["per_output"]] == pytest.approx(r2)
    assert [o["output"] for o in by_dataset["per_output"]] == [0, 1]
    assert by_dataset["loss_function"] == "mse"
    assert by_dataset["loss"] == pytest.approx(by_dataset["mse"], rel=1e-5)
    assert inline["r2"] == pytest.approx(metrics.r2_score(y[:50], y_pred[:50]))
    assert inline["n_samples"] == 50 and "accuracy" not in inline


def csv_dataset(client, columns: list[str], rows: slice = slice(40, 60), labels=None) -> int:
    text = iris_csv(columns, rows)
    if labels is not None:
        text = text.replace("setosa", labels)
    return upload_csv(client, text)


def mismatched_data_sets(client, regression) -> dict:
    """Data sets that do not fit the iris model, by what is wrong with them."""
    x, y = regression_rows(20)
    one_target = {"task": "regression", "features": x, "targets": [row[0] for row in y]}
    wide = {"task": "regression", "features": [[*row, 0.0] for row in x], "targets": y}
    return {
        "xor: 2 features": (
            "iris",
            client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"],
            "2 features; the model takes 4",
        ),
        "other feature names": (
            "iris",
            csv_dataset(client, ["a", "b", "c", "d"]),
            "has no column sepal_length, an input of the model",
        ),
        "a label the model lacks": (
            "iris",
            csv_dataset(client, IRIS_COLUMNS, labels="rose"),
            "labels the model does not know: ['rose']",
        ),
        "a regression data set": (
            "iris",
            client.post("/v1/datasets", json=wide).get_json()["id"],
            "is for regression; the model does classification",
        ),
        "one target column for two outputs": (
            regression["model_id"],
            client.post("/v1/datasets", json=one_target).get_json()["id"],
            "1 target columns; the model predicts 2",
        ),
    }


def test_a_data_set_that_does_not_fit_the_model_is_422_naming_dataset_id(client, iris, regression):
    for case, (ref, dataset_id, says) in mismatched_data_sets(client, regression).items():
        response = evaluate(client, ref, dataset_id=dataset_id)
        error = assert_envelope(response, 422, "dataset_id")
        assert says in error["details"]["dataset_id"][0], (case, error)


def test_a_data_set_with_the_models_features_in_another_order_is_matched_by_name(client, iris):
    """The model's signature names its inputs: a data set's columns are picked by those names,
    in any order, with other columns left out."""
    in_order = evaluate(client, "iris", dataset_id=csv_dataset(client, IRIS_COLUMNS))
    sample = load_sample("iris")
    table = [
        [row, *x[::-1], label]
        for row, (x, label) in enumerate(
            zip(sample.X[40:60].tolist(), sample.y[40:60], strict=True)
        )
    ]
    reordered = upload_csv(client, csv_text(["id", *IRIS_COLUMNS[::-1], "species"], table))
    answer = evaluate(client, "iris", dataset_id=reordered)
    assert answer.status_code == 200, answer.get_json()
    figures = ("loss", "accuracy", "confusion_matrix", "per_class")
    assert {k: answer.get_json()[k] for k in figures} == {
        k: in_order.get_json()[k] for k in figures
    }


def test_a_data_set_without_names_is_matched_by_width(client, iris):
    sample = load_sample("iris")
    rows = slice(40, 70)
    body = {"task": "classification", "features": sample.X[rows].tolist()}
    dataset_id = client.post("/v1/datasets", json={**body, "targets": sample.y[rows].tolist()})
    response = evaluate(client, "iris", dataset_id=dataset_id.get_json()["id"])
    assert response.status_code == 200, response.get_json()
    assert [c["support"] for c in response.get_json()["per_class"]] == [10, 20, 0]


def test_unknown_model_or_data_set_is_404(client, iris):
    assert_envelope(evaluate(client, "nothing", dataset_id=iris["dataset_id"]), 404)
    error = assert_envelope(evaluate(client, "iris", dataset_id=999), 404)
    assert error["message"] == "No data set 999."


BAD_INLINE = {
    "fewer targets than rows": ({"instances": [[0, 0], [1, 1]], "targets": [0]}, "targets"),
    "a label the model lacks": ({"instances": [[0, 0]], "targets": [7]}, "targets"),
    "labels in rows": ({"instances": [[0, 0]], "targets": [[0, 1]]}, "targets"),
    "targets not a list": ({"instances": [[0, 0]], "targets": 0}, "targets"),
    "rows of the wrong width": ({"instances": [[0, 0, 0]], "targets": [0]}, "instances"),
    "a string among the rows": ({"instances": [["a", 0]], "targets": [0]}, "instances[0][0]"),
    "no targets": ({"instances": [[0, 0]]}, "targets"),
    "nothing": ({}, "instances"),
    "both a data set and rows": ({"dataset_id": 1, "instances": [[0, 0]]}, "instances"),
    "a data set id as a string": ({"dataset_id": "1"}, "dataset_id"),
    "a data set id of 0": ({"dataset_id": 0}, "dataset_id"),
}


@pytest.mark.parametrize("case", BAD_INLINE, ids=list(BAD_INLINE))
def test_bad_evaluation_bodies_are_422_naming_the_field(client, sessions, case):
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    model_id = trained_model(client, sessions, dataset_id, epochs=5)
    body, field = BAD_INLINE[case]

    assert_envelope(evaluate(client, model_id, **body), 422, field)


BAD_REGRESSION_TARGETS = {
    "one value per row for two outputs": [1.0, 2.0],
    "three values per row": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]],
    "a word": [[1.0, "a"], [1.0, 2.0]],
}


@pytest.mark.parametrize("case", BAD_REGRESSION_TARGETS, ids=list(BAD_REGRESSION_TARGETS))
def test_regression_targets_that_do_not_fit_are_422(client, regression, case):
    body = {"instances": regression["x"][:2], "targets": BAD_REGRESSION_TARGETS[case]}
    error = assert_envelope(evaluate(client, regression["model_id"], **body), 422)
    assert [field for field in error["details"] if field.startswith("targets")], error


# -- CSV predictions ------------------------------------------------------------------------


def post_csv(client, ref, text: str, accept: str | None = None):
    headers = {"Accept": accept} if accept else {}
    return client.post(
        f"/v1/models/{ref}/predict", data=text, content_type="text/csv", headers=headers
    )


def test_csv_rows_predict_as_json_rows_do(client, iris):
    sample = load_sample("iris")
    rows = slice(40, 60)

    from_csv = post_csv(client, "iris", iris_csv(rows=rows))

    assert from_csv.status_code == 200, from_csv.get_json()
    from_json = predicted(client, "iris", sample.X[rows].tolist())
    assert from_csv.get_json()["predictions"] == from_json["predictions"]
    assert from_csv.get_json()["probabilities"] == from_json["probabilities"]
    assert from_csv.get_json()["name"] == "iris"
    assert from_csv.headers["X-Model-Name"] == "iris"


def test_csv_columns_are_matched_by_the_models_feature_names(client, iris):
    """In any order; columns the model does not take (an id, the target) are left out."""
    sample = load_sample("iris")
    order = [3, 1, 0, 2]
    header = ["id", *(IRIS_COLUMNS[i] for i in order), "species"]
    table = [
        [n, *row[order], label]
        for n, (row, label) in enumerate(zip(sample.X, sample.y, strict=True))
    ]

    response = post_csv(client, "iris", csv_text(header, table[:50]))

    assert response.status_code == 200, response.get_json()
    expected = predicted(client, "iris", sample.X[:50].tolist())["predictions"]
    assert response.get_json()["predictions"] == expected


def test_csv_answers_when_asked(client, iris):
    sample = load_sample("iris")
    response = post_csv(client, "iris", iris_csv(rows=slice(45, 55)), accept="text/csv")

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["X-Model-Id"] == str(iris["model_id"])
    assert response.headers["X-Model-Version"] == "1"
    header, *lines = csv.reader(io.StringIO(response.get_data(as_text=True)))
    assert header == ["prediction", *(f"probability_{label}" for label in IRIS_CLASSES)]
    expected = predicted(client, "iris", sample.X[45:55].tolist())
    assert [line[0] for line in lines] == expected["predictions"]
    probabilities = [[float(cell) for cell in line[1:]] for line in lines]
    assert probabilities == expected["probabilities"]  # repr round-trips every float


def test_json_rows_answer_csv_too(client, iris):
    rows = load_sample("iris").X[:3].tolist()
    response = client.post(
        "/v1/models/iris/predict", json={"instances": rows}, headers={"Accept": "text/csv"}
    )
    assert response.mimetype == "text/csv"
    assert len(response.get_data(as_text=True).splitlines()) == 4


def test_json_is_the_default_answer(client, iris):
    text = iris_csv(rows=slice(0, 2))
    for accept in (None, "*/*", "application/json", "application/json, text/csv;q=0.5"):
        response = post_csv(client, "iris", text, accept=accept)
        assert response.mimetype == "application/json", accept


def test_regression_answers_one_csv_column_per_output(client, regression):
    text = csv_text(["a", "b", "c"], regression["x"][:5])

    response = post_csv(client, regression["model_id"], text, accept="text/csv")

    header, *lines = csv.reader(io.StringIO(response.get_data(as_text=True)))
    assert header == ["prediction_0", "prediction_1"]
    expected = predicted(client, regression["model_id"], regression["x"][:5])["predictions"]
    assert [[float(cell) for cell in line] for line in lines] == expected


def test_csv_columns_are_positional_when_the_model_has_no_names(client, regression):
    """The model's data set was JSON: whatever the header says, three columns in order."""
    text = csv_text(["x", "y", "z"], regression["x"][:4])
    response = post_csv(client, regression["model_id"], text)
    expected = predicted(client, regression["model_id"], regression["x"][:4])["predictions"]
    assert response.get_json()["predictions"] == expected


BAD_CSV = {
    "a missing column": (
        "iris",
        "sepal_length,sepal_width,petal_length\n1,2,3\n",
        "no column 'petal_width'",
    ),
    "a cell that is not a number": (
        "iris",
        csv_text(IRIS_COLUMNS, [[1, 2, 3, 4], [1, 2, "n/a", 4]]),
        "line 3, column 'petal_length': 'n/a' is not a number",
    ),
    "a short line": ("iris", csv_text(IRIS_COLUMNS, [[1, 2, 3, 4], [1, 2]]), "line 3 has 2"),
    "no rows": ("iris", ",".join(IRIS_COLUMNS) + "\n", "has no data rows"),
    "not UTF-8": ("iris", b"\xff\xfe,1\n", "is not UTF-8"),
    "infinity": ("iris", csv_text(IRIS_COLUMNS, [[1, 2, 3, "inf"]]), "not a finite number"),
    "too many rows": ("iris", csv_text(IRIS_COLUMNS, [[1, 2, 3, 4]] * 51), "at most 50 rows"),
    "the wrong width without names": ("regression", "a,b\n1,2\n", "needs 3 values; got 2"),
}


@pytest.mark.parametrize("case", BAD_CSV, ids=list(BAD_CSV))
def test_bad_csv_is_422_naming_line_or_column(client, iris, regression, case):
    ref, text, says = BAD_CSV[case]
    ref = regression["model_id"] if ref == "regression" else ref

    error = assert_envelope(post_csv(client, ref, text), 422, "body")

    assert says in error["details"]["body"][0], error


def test_neither_json_nor_csv_is_415(client, iris):
    response = client.post("/v1/models/iris/predict", data="1,2,3,4", content_type="text/plain")
    assert_envelope(response, 415)


def test_csv_with_a_charset_is_csv(client, iris):
    response = client.post(
        "/v1/models/iris/predict",
        data=iris_csv(rows=slice(0, 2)),
        content_type="text/csv; charset=utf-8",
    )
    assert response.get_json()["predictions"] == ["setosa", "setosa"]


def test_openapi_documents_csv_and_evaluate(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    predict = paths["/v1/models/{ref}/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert set(predict["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert {"404", "415", "422"} <= set(predict["responses"])
    evaluation = paths["/v1/models/{ref}/evaluate"]["post"]
    assert set(evaluation["requestBody"]["content"]) == {"application/json"}
    assert {"200", "404", "422"} <= set(evaluation["responses"])
    schema = evaluation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Evaluation"}


def test_a_csv_body_over_the_limit_is_413_and_an_unknown_model_404(client, iris):
    text = csv_text(IRIS_COLUMNS, [[1.25, 2.5, 3.75, 4.5]] * 12_000)  # over 200,000 bytes here
    error = assert_envelope(post_csv(client, "iris", text), 413)
    assert "MAX_REQUEST_BYTES" in error["message"]
    assert_envelope(post_csv(client, "nothing", iris_csv(rows=slice(0, 2))), 404)


def test_a_weighted_data_set_gets_weighted_figures_as_repeated_rows_would(client, iris):
    """Integer weights: the weighted loss and accuracy are the unweighted ones of the data set
    with each row repeated that many times, and the accuracy scikit-learn's with the weights."""
    sample = load_sample("iris")
    counts = np.random.default_rng(2).integers(0, 4, len(sample.y))
    base = {"task": "classification", "features": sample.X.tolist()}
    weighted = {**base, "targets": sample.y.tolist(), "sample_weights": counts.tolist()}
    weighted_id = client.post("/v1/datasets", json=weighted).get_json()["id"]
    rows = np.repeat(np.arange(len(counts)), counts)
    repeated = {"task": "classification", "features": sample.X[rows].tolist()}
    repeated_id = client.post(
        "/v1/datasets", json={**repeated, "targets": sample.y[rows].tolist()}
    ).get_json()["id"]

    report = evaluate(client, "iris", dataset_id=weighted_id).get_json()
    expected = evaluate(client, "iris", dataset_id=repeated_id).get_json()
    assert report["weighted"]["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert report["weighted"]["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-12)
    y_pred = predicted(client, "iris", sample.X.tolist())["predictions"]
    assert report["weighted"]["accuracy"] == pytest.approx(
        metrics.accuracy_score(sample.y, y_pred, sample_weight=counts)
    )
    unweighted = evaluate(client, "iris", dataset_id=iris["dataset_id"]).get_json()
    assert report["loss"] == unweighted["loss"] and report["accuracy"] == unweighted["accuracy"]
    assert unweighted["weighted"] is None and expected["weighted"] is None


def test_a_weighted_regression_agrees_with_sklearn(client, regression):
    weights = np.linspace(0.1, 3.0, len(regression["x"]))
    body = {
        "task": "regression",
        "features": regression["x"],
        "targets": regression["y"],
        "sample_weights": weights.tolist(),
    }
    dataset_id = client.post("/v1/datasets", json=body).get_json()["id"]
    report = evaluate(client, regression["model_id"], dataset_id=dataset_id).get_json()
    y_pred = predicted(client, regression["model_id"], regression["x"])["predictions"]
    y_true = regression["y"]
    assert report["weighted"]["mse"] == pytest.approx(
        metrics.mean_squared_error(y_true, y_pred, sample_weight=weights), rel=1e-6
    )
    assert report["weighted"]["mae"] == pytest.approx(
        metrics.mean_absolute_error(y_true, y_pred, sample_weight=weights), rel=1e-6
    )
    assert report["weighted"]["loss"] == pytest.approx(report["weighted"]["mse"], rel=1e-5)
    assert report["weighted"]["accuracy"] is None
