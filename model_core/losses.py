"""Loss functions: the mean per-sample loss of a batch and its output error dL/dz.

``value(a, t)`` is the mean over the batch's rows of the per-sample loss. ``delta(a, t, out,
activation)`` writes into ``out`` the per-sample gradient dL_i/dz with respect to the output
layer's pre-activation z; the caller divides by the batch size, which makes the batch gradient the
mean of its samples' gradients. Cross-entropy is paired with softmax and binary cross-entropy with
sigmoid, whose fused gradient is simply ``a - t`` (scaled): the activation's derivative cancels.
"""

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from model_core.activations import Activation


def _log_clipped(a: np.ndarray) -> np.ndarray:
    """log(a) with a clipped to [eps, 1] so a confident wrong prediction costs a finite loss."""
    return np.log(np.clip(a, np.finfo(a.dtype).eps, 1.0))


class Loss(Protocol):
    name: str
    required_activation: str | None

    def value(self, a: np.ndarray, t: np.ndarray) -> float: ...

    def delta(
        self, a: np.ndarray, t: np.ndarray, out: np.ndarray, activation: Activation
    ) -> None: ...


@dataclass(frozen=True)
class SumSquaredError:
    """The textbook total error: 1/2 * sum over outputs of (a - t)^2, per sample."""

    name: str = "sse"
    required_activation: str | None = None

    def value(self, a: np.ndarray, t: np.ndarray) -> float:
        diff = a - t
        return 0.5 * float(np.vdot(diff, diff)) / len(a)

    def delta(self, a: np.ndarray, t: np.ndarray, out: np.ndarray, activation: Activation) -> None:
        np.subtract(a, t, out=out)
        activation.backward(out, a)


@dataclass(frozen=True)
class MeanSquaredError:
    """Mean over outputs of (a - t)^2, per sample (Keras' and PyTorch's ``mse``)."""

    name: str = "mse"
    required_activation: str | None = None

    def value(self, a: np.ndarray, t: np.ndarray) -> float:
        diff = a - t
        return float(np.vdot(diff, diff)) / diff.size

    def delta(self, a: np.ndarray, t: np.ndarray, out: np.ndarray, activation: Activation) -> None:
        np.subtract(a, t, out=out)
        out *= 2.0 / a.shape[1]
        activation.backward(out, a)


@dataclass(frozen=True)
class CrossEntropy:
    """-sum over classes of t * log(a), per sample, on a softmax output."""

    name: str = "cross_entropy"
    required_activation: str | None = "softmax"

    def value(self, a: np.ndarray, t: np.ndarray) -> float:
        return -float(np.vdot(t, _log_clipped(a))) / len(a)

    def delta(self, a: np.ndarray, t: np.ndarray, out: np.ndarray, activation: Activation) -> None:
        np.subtract(a, t, out=out)


@dataclass(frozen=True)
class BinaryCrossEntropy:
    """Mean over outputs of -(t log a + (1 - t) log(1 - a)), per sample, on a sigmoid output."""

    name: str = "binary_cross_entropy"
    required_activation: str | None = "sigmoid"

    def value(self, a: np.ndarray, t: np.ndarray) -> float:
        total = np.vdot(t, _log_clipped(a)) + np.vdot(1.0 - t, _log_clipped(1.0 - a))
        return -float(total) / a.size

    def delta(self, a: np.ndarray, t: np.ndarray, out: np.ndarray, activation: Activation) -> None:
        np.subtract(a, t, out=out)
        out *= 1.0 / a.shape[1]


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (SumSquaredError(), MeanSquaredError(), CrossEntropy(), BinaryCrossEntropy())
}
