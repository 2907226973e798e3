"""The network's layer shapes and its chunked forward pass."""

import numpy as np
import pytest

from model_core import Model, layer_shapes, train
from model_core.preprocessing import CHUNK_ROWS

LAYERS = [{"units": 5, "activation": "relu"}, {"units": 3, "activation": "softmax"}]


def test_layer_shapes_give_each_layers_fan_in_and_units():
    assert layer_shapes(4, LAYERS) == [(4, 5), (5, 3)]
    assert layer_shapes(7, LAYERS[-1:]) == [(7, 3)]


def test_layer_shapes_count_the_parameters_of_a_trained_model():
    x, y = np.random.default_rng(0).normal(size=(30, 4)), np.arange(30) % 3
    model = train(x, y, {"layers": LAYERS}, {"epochs": 1, "seed": 0}).model
    parameters = sum((fan_in + 1) * units for fan_in, units in layer_shapes(4, LAYERS))
    assert parameters == sum(w.size + b.size for w, b in model.weights) == 43


def test_prediction_in_chunks_matches_smaller_calls_and_leaves_the_rows_alone():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(CHUNK_ROWS + 100, 4)) * 3 + 1, rng.integers(0, 3, CHUNK_ROWS + 100)
    model = train(x[:200], y[:200], {"layers": LAYERS}, {"epochs": 2, "seed": 0}).model
    assert model.mean is not None
    before = x.copy()
    whole = model.predict_proba(x)
    assert np.array_equal(x, before)
    pieces = np.vstack([model.predict_proba(x[:100]), model.predict_proba(x[100:])])
    assert np.allclose(whole, pieces, rtol=1e-6, atol=1e-7)


def random_model(activations: list[str], dtype: str, scale: float, seed: int) -> Model:
    """A 5-input network with random weights (``scale`` their size) and a standardisation."""
    rng = np.random.default_rng(seed)
    sizes = [5, 16, 16][: len(activations)] + [3]
    weights = [
        (
            rng.normal(0, scale, (n_in, n_out)).astype(dtype),
            rng.normal(0, scale, n_out).astype(dtype),
        )
        for n_in, n_out in zip(sizes, sizes[1:], strict=False)
    ]
    network = {
        "dtype": dtype,
        "layers": [
            {"units": w.shape[1], "activation": a}
            for (w, _), a in zip(weights, activations, strict=True)
        ],
    }
    task = "classification" if activations[-1] == "softmax" else "regression"
    classes = [0, 1, 2] if task == "classification" else None
    mean = rng.normal(0, 10, 5).astype(dtype)
    return Model(network, weights, task, classes, mean, rng.uniform(0.01, 2, 5).astype(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "activations",
    [
        ["relu", "relu", "linear"],
        ["leaky_relu", "tanh", "softmax"],
        ["linear", "sigmoid", "linear"],
    ],
)
def test_rows_within_the_input_bound_have_finite_outputs(dtype, activations):
    for seed in range(5):
        model = random_model(activations, dtype, scale=30.0, seed=seed)
        bound = model.input_bound
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(64, 5))
        rows = np.vstack([signs * bound, np.full((1, 5), bound), np.full((1, 5), -bound)])
        assert np.isfinite(model.forward(rows)).all(), (seed, bound)


def test_a_float32_model_overflows_beyond_its_bound_and_the_bound_says_so():
    model = random_model(["relu", "relu", "linear"], "float32", scale=30.0, seed=1)
    huge = np.full((1, 5), 3.0e38)
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(model.forward(huge)).all()
    assert model.input_bound < 3.0e38
    assert model.input_bound > 1e30  # conservative, yet far beyond any real data
