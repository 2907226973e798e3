"""The network's layer shapes and its chunked forward pass."""

import numpy as np

from model_core import layer_shapes, train
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
