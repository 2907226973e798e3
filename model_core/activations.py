"""Activation functions, computed in place, with derivatives written from the forward output.

Each activation is a pair of in-place functions. ``forward(z)`` overwrites the pre-activation
``z`` with ``a = f(z)``. ``backward(delta, a)`` multiplies ``delta`` (dL/da, one row per sample)
by the derivative, using only ``a``, so that no pre-activation has to be kept for the backward
pass; afterwards ``delta`` is dL/dz.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LEAKY_RELU_SLOPE = 0.01
# relu compares arrays of at least this many items with an array of zeros (zeros), smaller ones
# with the scalar 0, whose call costs less than the loop around the array's.
ZEROS_MIN_SIZE = 4096
# The array of zeros holds this many items (1 MiB of float32); a larger array is compared a piece
# of this size at a time, so the zeros cost the process no more than this whatever the layer.
ZEROS_SIZE = 1 << 18
# row_max takes the maximum over a transposed copy for at least this many rows of at most
# SHORT_ROW items; below either the copy costs more than it saves.
TRANSPOSED_MIN_ROWS = 64
SHORT_ROW = 32
# One read-only array of ZEROS_SIZE zeros per dtype, made on first use (see zeros).
_ZEROS: dict[np.dtype, np.ndarray] = {}


def zeros(n: int, dtype: np.dtype) -> np.ndarray:
    """A read-only 1-D array of ``n`` (at most ZEROS_SIZE) zeros of ``dtype``: a view of one array
    kept for the process and never written.

    ``np.maximum(z, 0.0)`` takes NumPy's scalar path, 6x slower on a (1024, 256) float32 array
    than against an array of zeros (200 against 32 us, the same bits)."""
    array = _ZEROS.get(dtype)
    if array is None:
        array = np.zeros(ZEROS_SIZE, dtype)
        array.flags.writeable = False
        _ZEROS[dtype] = array
    return array[:n]


def sigmoid(z: np.ndarray) -> None:
    """1 / (1 + exp(-z)) written as (1 + tanh(z/2)) / 2: the same function, never overflows."""
    z *= 0.5
    np.tanh(z, out=z)
    z += 1.0
    z *= 0.5


def sigmoid_backward(delta: np.ndarray, a: np.ndarray) -> None:
    delta *= a
    delta *= 1.0 - a


def tanh(z: np.ndarray) -> None:
    np.tanh(z, out=z)


def tanh_backward(delta: np.ndarray, a: np.ndarray) -> None:
    delta *= 1.0 - a * a


def relu(z: np.ndarray) -> None:
    if z.size < ZEROS_MIN_SIZE or not z.flags.c_contiguous:
        np.maximum(z, 0.0, out=z)
        return
    flat = z.reshape(-1)
    for start in range(0, flat.size, ZEROS_SIZE):
        piece = flat[start : start + ZEROS_SIZE]
        np.maximum(piece, zeros(piece.size, z.dtype), out=piece)


def relu_backward(delta: np.ndarray, a: np.ndarray) -> None:
    # Multiplying by the mask is several times faster than assigning through it.
    np.multiply(delta, a > 0.0, out=delta)


def leaky_relu(z: np.ndarray) -> None:
    np.maximum(z, LEAKY_RELU_SLOPE * z, out=z)


def leaky_relu_backward(delta: np.ndarray, a: np.ndarray) -> None:
    np.multiply(delta, LEAKY_RELU_SLOPE, out=delta, where=a < 0.0)


def linear(z: np.ndarray) -> None:
    """The identity: nothing to do."""


def linear_backward(delta: np.ndarray, a: np.ndarray) -> None:
    """The derivative is 1: nothing to do."""


def softmax(z: np.ndarray) -> None:
    """Row-wise softmax; the row maximum is subtracted first so exp never overflows.

    The sum is the ufunc's own (``z.sum`` goes through a Python wrapper that costs as much as the
    work at batch 32)."""
    z -= row_max(z)
    np.exp(z, out=z)
    z /= np.add.reduce(z, axis=1, keepdims=True)


def row_max(z: np.ndarray) -> np.ndarray:
    """The maximum of each row of ``z`` (n, k), as a column (n, 1).

    Many short rows are reduced over the rows of a transposed copy: NumPy reduces each short row
    of ``z`` apart, 4x slower at (1024, 10) than the k passes over the copy's rows (54 against
    13 us, the copy included). A maximum does not depend on the order it is taken in, so it is
    the value of ``np.maximum.reduce(z, axis=1)`` either way (up to the sign of a zero, which
    exp(z - max) does not show)."""
    if len(z) < TRANSPOSED_MIN_ROWS or z.shape[1] > SHORT_ROW:
        return np.maximum.reduce(z, axis=1, keepdims=True)
    return np.maximum.reduce(np.ascontiguousarray(z.T), axis=0)[:, np.newaxis]


def softmax_backward(delta: np.ndarray, a: np.ndarray) -> None:
    """Jacobian-vector product of softmax: dz = a * (da - sum(da * a))."""
    delta -= np.einsum("ij,ij->i", delta, a)[:, None]
    delta *= a


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable[[np.ndarray], None]
    backward: Callable[[np.ndarray, np.ndarray], None]


ACTIVATIONS: dict[str, Activation] = {
    activation.name: activation
    for activation in (
        Activation("sigmoid", sigmoid, sigmoid_backward),
        Activation("tanh", tanh, tanh_backward),
        Activation("relu", relu, relu_backward),
        Activation("leaky_relu", leaky_relu, leaky_relu_backward),
        Activation("linear", linear, linear_backward),
        Activation("softmax", softmax, softmax_backward),
    )
}
