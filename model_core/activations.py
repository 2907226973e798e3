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
    np.maximum(z, 0.0, out=z)


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

    The reductions are the ufuncs' own (``z.max`` and ``z.sum`` go through Python wrappers that
    cost as much as the work at batch 32)."""
    z -= np.maximum.reduce(z, axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= np.add.reduce(z, axis=1, keepdims=True)


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
