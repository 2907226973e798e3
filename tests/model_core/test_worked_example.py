"""The classic worked example of backpropagation (Matt Mazur, "A Step by Step Backpropagation
Example"): a 2-2-2 sigmoid network, squared error, one sample, learning rate 0.5. The figures
below are the ones printed in that article, checked to every digit it gives."""

import numpy as np
import pytest

from model_core import Trainer, train

X = [[0.05, 0.10]]
TARGETS = [[0.01, 0.99]]
NETWORK = {
    "layers": [{"units": 2, "activation": "sigmoid"}, {"units": 2, "activation": "sigmoid"}],
    "loss": "sse",
    "dtype": "float64",
    # W has shape (inputs, units): W[i, j] is the weight from input i to unit j.
    "initial_weights": [
        {"W": [[0.15, 0.25], [0.20, 0.30]], "b": [0.35, 0.35]},  # w1 w3 / w2 w4
        {"W": [[0.40, 0.50], [0.45, 0.55]], "b": [0.60, 0.60]},  # w5 w7 / w6 w8
    ],
}
TRAINING = {
    "epochs": 1,
    "batch_size": 1,
    "shuffle": False,
    "standardize": False,
    "optimizer": {"name": "sgd", "learning_rate": 0.5},
}


@pytest.fixture(scope="module")
def one_step():
    return train(X, TARGETS, NETWORK, TRAINING, task="regression")


def test_forward_pass_and_total_error(one_step):
    assert one_step.history[0]["train_loss"] == pytest.approx(0.298371109, abs=5e-10)


def test_hidden_and_output_activations():
    trainer = Trainer(X, TARGETS, NETWORK, TRAINING, task="regression")
    _, (hidden, output) = trainer.compute_gradients(np.array([0]))
    assert hidden[0] == pytest.approx([0.593269992, 0.596884378], abs=5e-10)
    assert output[0] == pytest.approx([0.75136507, 0.772928465], abs=5e-9)


def test_output_layer_weights_after_one_update(one_step):
    w2, _ = one_step.model.weights[1]
    # w5, w6, w7, w8 as printed in the article.
    assert w2[0, 0] == pytest.approx(0.35891648, abs=5e-9)
    assert w2[1, 0] == pytest.approx(0.408666186, abs=5e-10)
    assert w2[0, 1] == pytest.approx(0.511301270, abs=5e-10)
    assert w2[1, 1] == pytest.approx(0.561370121, abs=5e-10)


def test_hidden_layer_weights_after_one_update(one_step):
    w1, _ = one_step.model.weights[0]
    # w1, w2, w3, w4 as printed in the article.
    assert w1[0, 0] == pytest.approx(0.149780716, abs=5e-10)
    assert w1[1, 0] == pytest.approx(0.19956143, abs=5e-9)
    assert w1[0, 1] == pytest.approx(0.24975114, abs=5e-9)
    assert w1[1, 1] == pytest.approx(0.29950229, abs=5e-9)


def test_biases_move_by_their_own_gradient(one_step):
    """The article keeps biases fixed; ours learn: b <- b - lr * delta (delta = dE/dz)."""
    out_o = np.array([0.75136507, 0.772928465])
    delta_o = (out_o - np.array(TARGETS[0])) * out_o * (1 - out_o)
    _, b2 = one_step.model.weights[1]
    assert b2 == pytest.approx(0.60 - 0.5 * delta_o, abs=1e-8)
