"""The ONNX export, run in onnxruntime, gives what service.serving.predictions.predict gives: labels
exactly, probabilities and regression values within 1e-5 (float32) and 1e-9 (float64), for every
activation in every position and every loss the engine accepts."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model_core import Model, train
from model_core.activations import ACTIVATIONS
from model_core.losses import LOSSES
from service.serving.onnx_export import (
    INPUT,
    ONNX_ACTIVATIONS,
    OPSET,
    PREDICTIONS,
    PROBABILITIES,
    NotExportable,
    onnx_model_bytes,
)
from service.serving.predictions import as_lists, prediction_arrays
from service.settings import Settings

TOLERANCE = {"float32": 1e-5, "float64": 1e-9}
DTYPES = list(TOLERANCE)
HIDDEN_ACTIVATIONS = [name for name in ACTIVATIONS if name != "softmax"]

RNG = np.random.default_rng(9)
# Columns of different offsets and spreads, so that standardisation matters.
X = RNG.normal(size=(48, 3)) * [1.0, 5.0, 0.1] + [0.0, 20.0, -3.0]
SCORE = X[:, 0] + 10.0 * (X[:, 2] + 3.0)
THREE_CLASSES = np.digitize(SCORE, np.quantile(SCORE, [1 / 3, 2 / 3]))
TWO_CLASSES = np.greater(SCORE, np.median(SCORE)).astype(int)
# Rows beyond the training range too: an export must agree away from the data as well.
ROWS = np.vstack([X, 3.0 * X - [0.0, 40.0, -6.0]])
TARGETS = np.column_stack([0.3 * X[:, 0] + 0.05 * X[:, 1], np.tanh(X[:, 2] + 3.0)])
LABELS = {
    "strings": ["setosa", "versicolor", "virginica"],
    "integers": [3, 7, 11],
    "floats": [0.5, 1.5, 2.5],
    "booleans": [False, True],
}
# Every output activation with every loss it may train with: a loss that needs an activation
# (cross_entropy after softmax, binary_cross_entropy after sigmoid) goes only with that one.
CLASSIFIER_OUTPUTS = [
    (activation, loss)
    for activation in ACTIVATIONS
    for loss, spec in LOSSES.items()
    if spec.required_activation in (None, activation)
]
REGRESSION_OUTPUTS = [
    (activation, loss)
    for activation in ACTIVATIONS
    for loss, spec in LOSSES.items()
    if spec.required_activation is None
]


def trained(
    x,
    y,
    layers: list[tuple[int, str]],
    *,
    task: str = "classification",
    dtype: str = "float32",
    standardize: bool = True,
    loss: str | None = None,
    epochs: int = 15,
) -> Model:
    """A model trained by model_core on ``x`` and ``y``; ``layers`` are (units, activation)."""
    network = {"layers": [{"units": u, "activation": a} for u, a in layers], "dtype": dtype}
    if loss is not None:
        network["loss"] = loss
    training = {"epochs": epochs, "seed": 4, "standardize": standardize, "batch_size": 8}
    return train(x, y, network, training, task=task).model


def labelled(kind: str, indices: np.ndarray) -> list:
    return [LABELS[kind][i] for i in indices]


def onnx_outputs(model: Model, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The exported graph's outputs for ``rows``, run by onnxruntime on the CPU."""
    session = ort.InferenceSession(onnx_model_bytes(model), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    values = session.run(None, {INPUT: np.asarray(rows, dtype=model.dtype)})
    return dict(zip(names, values, strict=True))


def assert_same_as_serving(model: Model, rows: np.ndarray = ROWS) -> dict[str, np.ndarray]:
    """onnxruntime's outputs against ``predict``'s: labels exact, numbers within TOLERANCE."""
    served = as_lists(prediction_arrays(model, rows, Settings().max_request_memory, "instances"))
    exported = onnx_outputs(model, rows)
    tolerance = TOLERANCE[model.dtype.name]
    if model.task == "classification":
        assert set(exported) == {PROBABILITIES, PREDICTIONS}
        assert exported[PREDICTIONS].tolist() == served["predictions"]
        assert exported[PROBABILITIES].dtype == model.dtype
        np.testing.assert_allclose(
            exported[PROBABILITIES], served["probabilities"], rtol=tolerance, atol=tolerance
        )
    else:
        assert set(exported) == {PREDICTIONS}
        assert exported[PREDICTIONS].dtype == model.dtype
        values = np.asarray(served["predictions"]).reshape(len(rows), -1)
        np.testing.assert_allclose(exported[PREDICTIONS], values, rtol=tolerance, atol=tolerance)
    return exported


@pytest.mark.parametrize("standardize", [True, False], ids=["standardized", "raw"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_each_hidden_activation(activation, dtype, standardize):
    model = trained(
        X,
        labelled("strings", THREE_CLASSES),
        [(6, activation), (5, activation), (3, "softmax")],
        dtype=dtype,
        standardize=standardize,
    )
    assert_same_as_serving(model)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("activation", "loss"), CLASSIFIER_OUTPUTS)
def test_each_classifier_output_and_loss(activation, loss, dtype):
    model = trained(
        X,
        labelled("integers", THREE_CLASSES),
        [(6, "tanh"), (3, activation)],
        dtype=dtype,
        loss=loss,
    )
    assert_same_as_serving(model)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("activation", "loss"), REGRESSION_OUTPUTS)
def test_each_regression_output_and_loss(activation, loss, dtype):
    model = trained(
        X, TARGETS, [(6, "leaky_relu"), (2, activation)], task="regression", dtype=dtype, loss=loss
    )
    exported = assert_same_as_serving(model)
    assert exported[PREDICTIONS].shape == (len(ROWS), 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_regression_target_is_one_column(dtype):
    model = trained(X, TARGETS[:, 0], [(4, "tanh"), (1, "linear")], task="regression", dtype=dtype)
    exported = assert_same_as_serving(model)
    assert exported[PREDICTIONS].shape == (len(ROWS), 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(LABELS))
@pytest.mark.parametrize(
    "output", [(1, "sigmoid"), (2, "softmax")], ids=["one sigmoid unit", "two softmax units"]
)
def test_two_classes_of_every_label_type(output, kind, dtype):
    """One sigmoid unit gives (1 - p, p) and the label p > 0.5; the labels keep their type."""
    model = trained(X, labelled(kind, TWO_CLASSES), [(5, "relu"), output], dtype=dtype)
    exported = assert_same_as_serving(model)
    assert exported[PROBABILITIES].shape == (len(ROWS), 2)
    assert {type(label) for label in exported[PREDICTIONS].tolist()} == {type(LABELS[kind][0])}


@pytest.mark.parametrize("kind", ["strings", "integers", "floats"])
def test_three_classes_of_every_label_type(kind):
    model = trained(X, labelled(kind, THREE_CLASSES), [(5, "tanh"), (3, "softmax")])
    assert_same_as_serving(model)


def test_a_row_with_no_positive_output_is_uniform():
    """A relu output that is zero everywhere gives 1/3 per class and the first class, as
    model_core's clip-and-normalise does."""
    model = trained(X, labelled("integers", THREE_CLASSES), [(4, "tanh"), (3, "relu")], loss="mse")
    model.weights[-1][1][:] = -1e3
    exported = assert_same_as_serving(model)
    np.testing.assert_allclose(exported[PROBABILITIES], 1.0 / 3.0, rtol=1e-6)
    assert set(exported[PREDICTIONS].tolist()) == {3}


def test_a_large_mean_keeps_float32_precision():
    """A column of 1e6 plus noise of spread 1: subtracting the mean first keeps the noise, which
    decides the class; the same standardisation folded into W and b would not."""
    x = np.column_stack([1e6 + RNG.normal(size=200), RNG.normal(size=200)])
    y = labelled("strings", (x[:, 0] > 1e6).astype(int) + (x[:, 1] > 0.5))
    model = trained(x, y, [(8, "tanh"), (3, "softmax")], epochs=30)
    assert_same_as_serving(model, x)

    # The check above could not catch a folding export unless folding really were off here.
    rows = x.astype(np.float32)
    (w, b), mean, scale = model.weights[0], model.mean, model.scale
    folded = rows @ (w / scale[:, None]) + (b - (mean / scale) @ w)
    assert np.abs(folded - ((rows - mean) / scale) @ w - b).max() > 1e-3


@pytest.mark.parametrize("standardize", [True, False], ids=["standardized", "raw"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_graph_passes_the_checker_and_says_what_it_takes(dtype, standardize):
    model = trained(
        X,
        labelled("strings", THREE_CLASSES),
        [(4, "relu"), (3, "softmax")],
        dtype=dtype,
        standardize=standardize,
    )
    graph_model = onnx.load_from_string(onnx_model_bytes(model))
    onnx.checker.check_model(graph_model, full_check=True)
    assert [(o.domain, o.version) for o in graph_model.opset_import] == [("", OPSET)]

    element = {"float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.DOUBLE}[dtype]
    (given,) = graph_model.graph.input
    assert given.name == INPUT
    assert given.type.tensor_type.elem_type == element
    dims = given.type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("N", 3)
    outputs = {o.name: o.type.tensor_type.elem_type for o in graph_model.graph.output}
    assert outputs == {PROBABILITIES: element, PREDICTIONS: onnx.TensorProto.STRING}

    ops = [node.op_type for node in graph_model.graph.node]
    before_gemm = ops[: ops.index("Gemm")]
    assert before_gemm == (["Sub", "Div"] if standardize else [])
    assert ops.count("Gemm") == 2


def test_every_engine_activation_has_an_export():
    assert set(ONNX_ACTIVATIONS) == set(ACTIVATIONS)


def test_an_activation_without_export_is_named(monkeypatch):
    model = trained(X, TWO_CLASSES, [(4, "tanh"), (1, "sigmoid")])
    monkeypatch.delitem(ONNX_ACTIVATIONS, "tanh")
    with pytest.raises(NotExportable, match=r"layers\[0\]\.activation: 'tanh' has no ONNX export"):
        onnx_model_bytes(model)


def test_classes_no_tensor_holds_are_named():
    model = trained(X, TWO_CLASSES, [(4, "tanh"), (1, "sigmoid")])
    model.classes = [None, 1]
    with pytest.raises(NotExportable, match="classes"):
        onnx_model_bytes(model)


def test_a_model_trained_with_dropout_predicts_and_exports_without_masks():
    """Dropout is the identity at inference: serving agrees with the exported graph, which has
    no dropout in it, and the same rows always get the same answers."""
    network = {
        "layers": [
            {"units": 6, "activation": "tanh", "dropout": 0.3},
            {"units": 5, "activation": "relu", "dropout": 0.5},
            {"units": 3, "activation": "softmax"},
        ]
    }
    training = {"epochs": 15, "seed": 4, "batch_size": 8}
    model = train(X, labelled("strings", THREE_CLASSES), network, training).model
    assert [layer["dropout"] for layer in model.network["layers"]] == [0.3, 0.5, 0.0]
    assert_same_as_serving(model)
    assert np.array_equal(model.predict_proba(ROWS), model.predict_proba(ROWS))
