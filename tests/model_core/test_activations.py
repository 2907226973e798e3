"""The fast paths of the activations give the bits of the plain NumPy calls they replace."""

import numpy as np
import pytest

from model_core import activations, train
from model_core.activations import relu, row_max, softmax, zeros


def awkward_values(shape, dtype, seed=0):
    """Normal values with signed zeros, infinities and a NaN among them."""
    z = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    flat = z.reshape(-1)
    flat[::7] = -0.0
    flat[3::11] = 0.0
    flat[5::13] = -np.inf
    flat[6::17] = np.inf
    flat[8] = np.nan
    return z


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 5), (1024, 256), (70, 64), (2048, 300)])
def test_relu_is_the_maximum_with_zero(dtype, shape):
    z = awkward_values(shape, dtype)
    expected = np.maximum(z, 0.0)
    relu(z)
    assert same_bits(z, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_of_an_array_larger_than_the_zeros_goes_piece_by_piece(dtype, monkeypatch):
    monkeypatch.setattr(activations, "ZEROS_SIZE", 5000)
    monkeypatch.setattr(activations, "_ZEROS", {})
    z = awkward_values((130, 100), dtype)  # 13,000 items: pieces of 5000, 5000, 3000
    expected = np.maximum(z, 0.0)
    relu(z)
    assert same_bits(z, expected)
    assert activations._ZEROS[np.dtype(dtype)].size == 5000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_of_a_strided_array_takes_the_scalar(dtype):
    z = awkward_values((100, 200), dtype)
    expected = z.copy()
    expected[:, ::2] = np.maximum(z[:, ::2], 0.0)
    relu(z[:, ::2])
    assert same_bits(z, expected)


def test_the_zeros_are_read_only_views_of_one_array():
    first, second = zeros(10, np.dtype(np.float64)), zeros(3000, np.dtype(np.float64))
    assert not (first.any() or second.any())
    assert not second.flags.writeable
    assert np.shares_memory(first, second)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape", [(1, 10), (63, 10), (64, 10), (1024, 10), (100, 1), (100, 32), (100, 33)]
)
def test_row_max_is_numpys_row_maximum(dtype, shape):
    z = awkward_values(shape, dtype)
    expected = np.maximum.reduce(z, axis=1, keepdims=True)
    got = row_max(z)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)  # -0.0 == 0.0: the sign may differ


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1024, 10), (64, 3), (200, 32)])
def test_softmax_has_the_bits_of_the_row_by_row_maximum(dtype, shape, monkeypatch):
    z = np.random.default_rng(1).normal(scale=30, size=shape).astype(dtype)
    z[::5, 0] = z[::5, 1] = 0.0
    z[::5, 2] = -0.0
    z[::5, 3:] = -1.0  # rows whose maximum is a zero of either sign
    fast = z.copy()
    softmax(fast)
    monkeypatch.setattr(activations, "TRANSPOSED_MIN_ROWS", 10**9)
    plain = z.copy()
    softmax(plain)
    assert same_bits(fast, plain)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_on_the_fast_paths_has_the_bits_of_the_plain_calls(dtype, monkeypatch):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(600, 30)), rng.integers(0, 10, 600)
    network = {
        "layers": [{"units": 64, "activation": "relu"}, {"units": 10, "activation": "softmax"}],
        "dtype": dtype,
    }
    training = {"epochs": 2, "batch_size": 256, "seed": 3, "validation_split": 0.2}
    fast = train(x, y, network, training)
    monkeypatch.setattr(activations, "ZEROS_MIN_SIZE", 10**12)
    monkeypatch.setattr(activations, "TRANSPOSED_MIN_ROWS", 10**12)
    plain = train(x, y, network, training)
    for (w_fast, b_fast), (w_plain, b_plain) in zip(
        fast.model.weights, plain.model.weights, strict=True
    ):
        assert same_bits(w_fast, w_plain) and same_bits(b_fast, b_plain)
    assert [r["train_loss"] for r in fast.history] == [r["train_loss"] for r in plain.history]
    assert [r["val_loss"] for r in fast.history] == [r["val_loss"] for r in plain.history]
