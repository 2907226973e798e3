"""Backpropagation against central finite differences, in float64, for every allowed pairing of
hidden activation, output activation and loss."""

import numpy as np
import pytest

from model_core import Trainer

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "linear"]
# (output activation, loss, task): every combination the spec accepts.
OUTPUTS = [
    *[
        (activation, loss, "regression")
        for activation in ["sigmoid", "tanh", "relu", "leaky_relu", "linear", "softmax"]
        for loss in ["sse", "mse"]
    ],
    ("softmax", "cross_entropy", "classification"),
    ("sigmoid", "binary_cross_entropy", "classification"),
    ("softmax", "mse", "classification"),
    ("sigmoid", "sse", "classification"),
]
EPS = 1e-6


def make_trainer(
    hidden: str, output: str, loss: str, task: str, l2: float = 0.0, dropout: float = 0.0
) -> Trainer:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 3))
    n_outputs = 3
    y = rng.integers(0, n_outputs, size=6) if task == "classification" else rng.random((6, 3))
    if task == "classification":
        y[:n_outputs] = np.arange(n_outputs)  # every class present
    network = {
        "layers": [
            {"units": 5, "activation": hidden, "dropout": dropout},
            {"units": 4, "activation": hidden, "dropout": dropout},
            {"units": n_outputs, "activation": output},
        ],
        "loss": loss,
        "init": "normal",
        "dtype": "float64",
    }
    training = {"seed": 3, "l2": l2, "batch_size": 6, "standardize": False}
    trainer = Trainer(x, y, network, training, task=task)
    for w, b in trainer.weights:  # non-zero biases, so their gradients are tested too
        b[...] = rng.normal(scale=0.5, size=b.shape)
        w *= 1.5
    return trainer


def numerical_gradient(trainer: Trainer, rows: np.ndarray, param: np.ndarray) -> np.ndarray:
    """Central differences, with the dropout masks (if any) of the analytic gradient's call."""
    grad = np.zeros_like(param)
    for index in np.ndindex(param.shape):
        saved = param[index]
        param[index] = saved + EPS
        plus, _ = trainer.compute_gradients(rows, draw_masks=False)
        param[index] = saved - EPS
        minus, _ = trainer.compute_gradients(rows, draw_masks=False)
        param[index] = saved
        grad[index] = (plus - minus) / (2 * EPS)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def assert_gradients_match(trainer: Trainer, tolerance: float = 1e-6) -> None:
    rows = np.arange(len(trainer.x))
    trainer.compute_gradients(rows)
    analytic = [g.copy() for g in trainer.grads]
    for i, (param, grad) in enumerate(zip(trainer.params, analytic, strict=True)):
        numeric = numerical_gradient(trainer, rows, param)
        assert relative_error(numeric, grad) < tolerance, f"parameter {i}"


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize(("output", "loss", "task"), OUTPUTS)
def test_backprop_matches_finite_differences(hidden, output, loss, task):
    assert_gradients_match(make_trainer(hidden, output, loss, task))


@pytest.mark.parametrize(("output", "loss", "task"), OUTPUTS[-4:])
def test_l2_penalty_gradient_matches_finite_differences(output, loss, task):
    assert_gradients_match(make_trainer("tanh", output, loss, task, l2=0.3))


def test_single_sigmoid_unit_binary_cross_entropy_gradient():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 2)), np.array([0, 1] * 4)
    network = {
        "layers": [{"units": 3, "activation": "tanh"}, {"units": 1, "activation": "sigmoid"}],
        "loss": "binary_cross_entropy",
        "dtype": "float64",
    }
    trainer = Trainer(x, y, network, {"seed": 1, "batch_size": 8}, task="classification")
    assert_gradients_match(trainer)


@pytest.mark.parametrize("hidden", ["tanh", "sigmoid", "leaky_relu"])
@pytest.mark.parametrize(("output", "loss", "task"), [OUTPUTS[-4], OUTPUTS[1]])
def test_dropout_gradient_with_its_masks_fixed_matches_finite_differences(
    hidden, output, loss, task
):
    trainer = make_trainer(hidden, output, loss, task, l2=0.1, dropout=0.4)
    assert_gradients_match(trainer, tolerance=1e-7)
    masks = [m for m in trainer.batch_buffers(len(trainer.x)).dropout.masks if m is not None]
    dropped = sum(int(np.count_nonzero(mask == 0)) for mask in masks)
    assert len(masks) == 2 and 0 < dropped < sum(mask.size for mask in masks)
