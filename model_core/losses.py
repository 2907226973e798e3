"""Loss functions: the mean per-sample loss of a batch and its output error dL/dz.

``value(a, t)`` is the mean over the batch's rows of the per-sample loss. ``value_and_delta(a, t,
out, activation)`` returns the same value and writes into ``out`` the per-sample gradient dL_i/dz
with respect to the output layer's pre-activation z, sharing the work both need (the training
loop calls it once per batch); the caller divides by the batch size, which makes the batch
gradient the mean of its samples' gradients. Cross-entropy is paired with softmax and binary
cross-entropy with sigmoid, whose fused gradient is simply ``a - t`` (scaled): the activation's
derivative cancels. ``per_sample(a, t)`` gives each row's loss (n_samples,), which the weighted
loss (model_core/weighting.py) averages with the rows' weights.
"""

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from model_core.activations import Activation

EPSILON = {np.dtype(dtype): np.finfo(dtype).eps for dtype in (np.float32, np.float64)}


def _log_clipped(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """log(a) with a clipped to [eps, 1] so a confident wrong prediction costs a finite loss;
    into ``out`` (a's shape) when given. The same values as ``np.clip``, without its wrapper."""
    clipped = np.maximum(a, EPSILON[a.dtype], out=out)
    np.minimum(clipped, 1.0, out=clipped)
    return np.log(clipped, out=clipped)


class Loss(Protocol):
    name: str
    required_activation: str | None

    def value(self, a: np.ndarray, t: np.ndarray) -> float: ...

    def per_sample(self, a: np.ndarray, t: np.ndarray) -> np.ndarray: ...

    def value_and_delta(
        self, a: np.ndarray, t: np.ndarray, out: np.ndarray, activation: Activation
    ) -> float: ...


@dataclass(frozen=True)
class SumSquaredError:
    """The textbook total error: 1/2 * sum over outputs of (a - t)^2, per sample."""

    name: str = "sse"
    required_activation: str | None = None

    def value(self, a: np.ndarray, t: np.ndarray) -> float:
        diff = a - t
        return 0.5 * float(np.vdot(diff, diff)) / len(a)

    def per_sample(self, a: np.ndarray, t: np.ndarray) -> np.ndarray:
        diff = a - t
        return 0.5 * np.einsum("ij,ij->i", diff, diff)

    def value_and_delta(
        self, a: np.ndarray, t: np.ndarray, out: np.ndarray, activation: Activation
    ) -> float:
        np.subtract(a, t, out=out)
        value = 0.5 * float(np.vdot(out, out)) / len(a)
        activation.backward(out, a)
        return value


@dataclass(frozen=True)
class MeanSquaredError:
    """Mean over outputs of (a - t)^2, per sample (Keras' and PyTorch's ``mse``)."""

    name: str = "mse"
    required_activation: str | None = None

    def value(self, a: np.ndarray, t: np.ndarray) -> float:
        diff = a - t
        return float(np.vdot(diff, diff)) / diff.size

    def per_sample(self, a: np.ndarray, t: np.ndarray) -> np.ndarray:
        diff = a - t
        return np.einsum("ij,ij->i", diff, diff) / a.shape[1]

    def value_and_delta(
        self, a: np.ndarray, t: np.ndarray, out: np.ndarray, activation: Activation
    ) -> float:
        np.subtract(a, t, out=out)
        value = float(np.vdot(out, out)) / out.size
        out *= 2.0 / a.shape[1]
        activation.backward(out, a)
        return value


@dataclass(frozen=True)
class CrossEntropy:
    """-sum over classes of t * log(a), per sample, on a softmax output."""

    name: str = "cross_entropy"
    required_activation: str | None = "softmax"

    def value(self, a: np.ndarray, t: np.ndarray) -> float:
        return -float(np.vdot(t, _log_clipped(a))) / len(a)

    def per_sample(self, a: np.ndarray, t: np.ndarray) -> np.ndarray:
        return -np.einsum("ij,ij->i", t, _log_clipped(a))

    def value_and_delta(
        self, a: np.ndarray, t: np.ndarray, out: np.ndarray, activation: Activation
    ) -> float:
        # out is scratch first. A softmax never exceeds 1, so clipping at eps alone is all that
        # _log_clipped's two clips would do here.
        np.maximum(a, EPSILON[a.dtype], out=out)
        value = -float(np.vdot(t, np.log(out, out=out))) / len(a)
        np.subtract(a, t, out=out)
        return value


@dataclass(frozen=True)
class BinaryCrossEntropy:
    """Mean over outputs of -(t log a + (1 - t) log(1 - a)), per sample, on a sigmoid output."""

    name: str = "binary_cross_entropy"
    required_activation: str | None = "sigmoid"

    def value(self, a: np.ndarray, t: np.ndarray) -> float:
        total = np.vdot(t, _log_clipped(a)) + np.vdot(1.0 - t, _log_clipped(1.0 - a))
        return -float(total) / a.size

    def per_sample(self, a: np.ndarray, t: np.ndarray) -> np.ndarray:
        total = np.einsum("ij,ij->i", t, _log_clipped(a))
        total += np.einsum("ij,ij->i", 1.0 - t, _log_clipped(1.0 - a))
        return -total / a.shape[1]

    def value_and_delta(
        self, a: np.ndarray, t: np.ndarray, out: np.ndarray, activation: Activation
    ) -> float:
        np.subtract(a, t, out=out)
        out *= 1.0 / a.shape[1]
        return self.value(a, t)


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (SumSquaredError(), MeanSquaredError(), CrossEntropy(), BinaryCrossEntropy())
}
