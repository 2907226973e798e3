"""service.serving.evaluation: every figure checked against sklearn.metrics on the same predictions,
and the loss against the val_loss model_core measured while training on the same rows."""

import numpy as np
import pytest
from sklearn import metrics

import model_core
from model_core import SpecError
from service.serving.evaluation import SparseConfusionMatrix, evaluate

TRAINING = {"epochs": 15, "batch_size": 16, "seed": 3, "validation_split": 0.0}


def blobs(seed: int, labels: list, n_train: int, n_test: int) -> tuple[tuple, tuple]:
    """Training and test rows of overlapping Gaussian clusters, one per label, so that a short
    training leaves errors to count."""
    rng = np.random.default_rng(seed)
    n_samples = n_train + n_test
    y = rng.choice(np.array(labels), size=n_samples)
    centres = {label: rng.normal(0, 1.5, size=4) for label in labels}
    x = np.stack([centres[label] for label in y]) + rng.normal(0, 1.5, size=(n_samples, 4))
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def network(hidden: str, units: int, output: str, **extra) -> dict:
    """Eight ``hidden`` units, then ``units`` of ``output``."""
    layers = [{"units": 8, "activation": hidden}, {"units": units, "activation": output}]
    return {"layers": layers, **extra}


def trained(x, y, spec: dict, task: str, validation) -> model_core.TrainResult:
    return model_core.train(x, y, spec, TRAINING, task=task, validation_data=validation)


def hand_made(units: int, activation: str, loss: str, bias: list, task: str, **kwargs):
    """A one-layer model that ignores its inputs: every row gets the same output, ``bias``."""
    layers = [{"units": units, "activation": activation}]
    weights = [(np.zeros((2, units)), np.array(bias, dtype=np.float64))]
    spec = {"layers": layers, "loss": loss, "dtype": "float64"}
    return model_core.Model(spec, weights, task, **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_multiclass_figures_match_sklearn(dtype):
    (x, y), (x_test, y_test) = blobs(0, ["cat", "dog", "emu"], 300, 120)
    spec = network("tanh", 3, "softmax", dtype=dtype)
    result = trained(x, y, spec, "classification", (x_test, y_test))
    model = result.model

    report = evaluate(model, x_test, y_test)

    predicted, probabilities = model.predict_with_proba(x_test)
    classes = model.classes
    assert 0.5 < report.accuracy < 1.0  # some errors, so that the figures below say something
    assert report.accuracy == pytest.approx(metrics.accuracy_score(y_test, predicted))
    precision, recall, _, support = metrics.precision_recall_fscore_support(
        y_test, predicted, labels=classes, zero_division=0
    )
    assert [c.label for c in report.per_class] == classes
    assert [c.precision for c in report.per_class] == pytest.approx(precision)
    assert [c.recall for c in report.per_class] == pytest.approx(recall)
    assert [c.support for c in report.per_class] == support.tolist()
    assert report.confusion_matrix.labels == classes
    expected = metrics.confusion_matrix(y_test, predicted, labels=classes)
    assert report.confusion_matrix.counts == expected.tolist()
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    assert report.loss_function == "cross_entropy"
    assert report.loss == pytest.approx(
        metrics.log_loss(y_test, probabilities, labels=classes), rel=tolerance
    )
    assert report.loss == pytest.approx(result.history[-1]["val_loss"], rel=tolerance)
    assert report.n_samples == 120


def test_binary_sigmoid_figures_match_sklearn():
    """One sigmoid unit: classes[1] above 0.5; the loss is binary cross-entropy."""
    (x, y), (x_test, y_test) = blobs(1, [3, 7], 200, 80)
    spec = network("relu", 1, "sigmoid", dtype="float32")
    result = trained(x, y, spec, "classification", (x_test, y_test))

    report = evaluate(result.model, x_test, y_test)

    predicted, probabilities = result.model.predict_with_proba(x_test)
    assert report.loss_function == "binary_cross_entropy"
    assert report.loss == pytest.approx(metrics.log_loss(y_test, probabilities[:, 1]), rel=1e-5)
    assert report.loss == pytest.approx(result.history[-1]["val_loss"], rel=1e-6)
    assert report.accuracy == pytest.approx(metrics.accuracy_score(y_test, predicted))
    expected = metrics.confusion_matrix(y_test, predicted, labels=[3, 7])
    assert report.confusion_matrix.counts == expected.tolist()
    precision, recall, _, _ = metrics.precision_recall_fscore_support(y_test, predicted)
    assert [c.precision for c in report.per_class] == pytest.approx(precision)
    assert [c.recall for c in report.per_class] == pytest.approx(recall)


def test_a_class_never_predicted_has_precision_zero():
    model = hand_made(3, "softmax", "cross_entropy", [5, 0, 0], "classification")
    model.classes = ["a", "b", "c"]
    y = ["a", "b", "c", "c"]

    report = evaluate(model, np.zeros((4, 2)), y)

    predicted = model.predict(np.zeros((4, 2)))
    precision, recall, _, _ = metrics.precision_recall_fscore_support(
        y, predicted, labels=["a", "b", "c"], zero_division=0
    )
    assert [c.precision for c in report.per_class] == [0.25, 0.0, 0.0] == precision.tolist()
    assert [c.recall for c in report.per_class] == [1.0, 0.0, 0.0] == recall.tolist()
    assert report.confusion_matrix.counts == [[1, 0, 0], [1, 0, 0], [2, 0, 0]]


def test_a_class_absent_from_the_targets_is_listed_with_recall_zero():
    model = hand_made(3, "softmax", "cross_entropy", [0, 5, 0], "classification")
    model.classes = [0, 1, 2]
    y = [1, 1, 0]

    report = evaluate(model, np.zeros((3, 2)), y)

    assert [c.support for c in report.per_class] == [1, 2, 0]
    assert [c.recall for c in report.per_class] == [0.0, 1.0, 0.0]
    assert [c.precision for c in report.per_class] == pytest.approx([0.0, 2 / 3, 0.0])
    assert report.confusion_matrix.counts == [[0, 1, 0], [0, 2, 0], [0, 0, 0]]


def test_one_row_of_a_3000_class_model_costs_one_entry_not_k_squared():
    """Row 7 of issue 21: the dense matrix was 9 million counts for one row."""
    model = hand_made(3000, "softmax", "cross_entropy", [0.0] * 2999 + [5.0], "classification")
    model.classes = list(range(3000))

    report = evaluate(model, np.zeros((1, 2)), [7], max_dense_classes=100)

    assert report.confusion_matrix == SparseConfusionMatrix(list(range(3000)), [[7, 2999, 1]])
    assert [c.support for c in report.per_class[6:9]] == [0, 1, 0]
    assert report.per_class[2999].precision == 0.0 and report.accuracy == 0.0


def test_the_sparse_matrix_holds_the_nonzero_counts_of_the_dense_one():
    (x, y), (x_test, y_test) = blobs(2, ["cat", "dog", "emu", "fox"], 200, 100)
    model = trained(x, y, network("tanh", 4, "softmax"), "classification", None).model

    dense = evaluate(model, x_test, y_test, max_dense_classes=4)
    sparse = evaluate(model, x_test, y_test, max_dense_classes=3)

    counts = dense.confusion_matrix.counts
    assert sparse.confusion_matrix.entries == [
        [i, j, count] for i, row in enumerate(counts) for j, count in enumerate(row) if count
    ]
    assert sparse.per_class == dense.per_class and sparse.accuracy == dense.accuracy


def regression_rows(rng: np.random.Generator, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n_samples, 3))
    y = np.column_stack([x @ [1.0, -2.0, 0.5] + 10, np.sin(x[:, 0]) * 3 - 1])
    return x, y + rng.normal(0, 0.3, size=y.shape)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_regression_figures_match_sklearn(dtype):
    x, y = regression_rows(np.random.default_rng(2), 300)
    x_test, y_test = regression_rows(np.random.default_rng(20), 90)
    spec = network("tanh", 2, "linear", dtype=dtype)
    result = trained(x, y, spec, "regression", (x_test, y_test))

    report = evaluate(result.model, x_test, y_test)

    predicted = result.model.predict(x_test)
    raw = {"multioutput": "raw_values"}
    assert [o.mse for o in report.per_output] == pytest.approx(
        metrics.mean_squared_error(y_test, predicted, **raw)
    )
    assert [o.mae for o in report.per_output] == pytest.approx(
        metrics.mean_absolute_error(y_test, predicted, **raw)
    )
    assert [o.r2 for o in report.per_output] == pytest.approx(
        metrics.r2_score(y_test, predicted, **raw)
    )
    assert report.mse == pytest.approx(metrics.mean_squared_error(y_test, predicted))
    assert report.mae == pytest.approx(metrics.mean_absolute_error(y_test, predicted))
    assert report.r2 == pytest.approx(metrics.r2_score(y_test, predicted))
    assert 0 < report.r2 < 1
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    assert report.loss_function == "mse"
    assert report.loss == pytest.approx(result.history[-1]["val_loss"], rel=tolerance)
    assert [o.output for o in report.per_output] == [0, 1]


def test_one_output_regression_takes_a_flat_target():
    x, y = regression_rows(np.random.default_rng(4), 100)
    spec = {"layers": [{"units": 1, "activation": "linear"}], "loss": "sse"}
    result = trained(x, y[:, 0], spec, "regression", (x, y[:, 0]))

    report = evaluate(result.model, x, y[:, 0])

    predicted = result.model.predict(x)
    assert report.r2 == pytest.approx(metrics.r2_score(y[:, 0], predicted))
    assert report.per_output[0].r2 == report.r2
    assert report.loss == pytest.approx(result.history[-1]["val_loss"], rel=1e-5)
    assert report.loss == pytest.approx(0.5 * metrics.mean_squared_error(y[:, 0], predicted))


def test_r2_of_a_constant_target_is_one_when_exact_and_zero_otherwise():
    """scikit-learn's force_finite=True: no variance to explain is not a division by zero."""
    model = hand_made(2, "linear", "mse", [3, 3], "regression", target_ndim=2)
    y = np.array([[3.0, 7.0], [3.0, 7.0], [3.0, 7.0]])

    report = evaluate(model, np.zeros((3, 2)), y)

    predicted = model.predict(np.zeros((3, 2)))
    expected = metrics.r2_score(y, predicted, multioutput="raw_values")
    assert [o.r2 for o in report.per_output] == [1.0, 0.0] == expected.tolist()
    assert report.r2 == 0.5 == metrics.r2_score(y, predicted)
    assert report.mse == 8.0


def test_r2_of_a_single_row_is_none():
    """scikit-learn answers NaN (with a warning); JSON has no NaN, so the report says null."""
    model = hand_made(1, "linear", "mse", [1], "regression")

    report = evaluate(model, np.zeros((1, 2)), [2.0])

    assert report.r2 is None and report.per_output[0].r2 is None
    assert report.mse == 1.0 and report.mae == 1.0


BAD_DATA = {
    "rows of the wrong width": (np.zeros((3, 5)), [0, 1, 0], "X"),
    "a label the model does not know": (np.zeros((3, 2)), [0, 1, 9], "y"),
    "fewer labels than rows": (np.zeros((3, 2)), [0, 1], "y"),
    "labels in two columns": (np.zeros((3, 2)), [[0, 1], [1, 0], [0, 0]], "y"),
    "a NaN feature": (np.array([[0.0, np.nan]]), [0], "X"),
}


@pytest.mark.parametrize("case", BAD_DATA, ids=list(BAD_DATA))
def test_data_that_does_not_fit_the_classifier_names_x_or_y(case):
    x, y, field = BAD_DATA[case]
    model = hand_made(2, "softmax", "cross_entropy", [0, 1], "classification", classes=[0, 1])

    with pytest.raises(SpecError) as raised:
        evaluate(model, x, y)

    assert raised.value.field == field


BAD_TARGETS = {
    "three target columns for two outputs": np.zeros((2, 3)),
    "words": ["a", "b"],
    "infinity": [[0.0, np.inf], [0.0, 0.0]],
}


@pytest.mark.parametrize("case", BAD_TARGETS, ids=list(BAD_TARGETS))
def test_targets_that_do_not_fit_the_regression_name_y(case):
    model = hand_made(2, "linear", "mse", [0, 0], "regression", target_ndim=2)

    with pytest.raises(SpecError) as raised:
        evaluate(model, np.zeros((2, 2)), BAD_TARGETS[case])

    assert raised.value.field == "y"
