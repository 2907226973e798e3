"""Gradient-descent optimizers: objects that own their state and update parameters in place.

An optimizer is built from the list of parameter arrays, views of one flat buffer made by
:func:`model_core.buffers.flat_buffer`; ``step`` receives that flat buffer and the gradients'
(the same layout), so that each pass of an update is one NumPy call whatever the number of
layers. Its own state lives in a buffer of the same layout; ``state()`` gives it per parameter.

``gradient_scale(lr)`` tells the backward pass what to multiply the gradients by while it
computes them: SGD asks for ``lr``, which folds the learning rate into the output error for free
and saves a pass over every parameter per batch; Adam needs the raw gradient. ``step`` may
overwrite the gradient arrays: they are scratch space once the update is done.

``OPTIMIZERS`` is the one registry of optimizer names; each class's ``DEFAULTS`` are the spec
fields it takes, in the order a resolved spec lists them, and ``from_spec`` builds it from them.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from model_core.buffers import flat_buffer


class SGD:
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``:

    v = momentum * v + g;  p -= lr * v       (Nesterov: p -= lr * (g + momentum * v))

    It receives lr * g and keeps u = lr * v, which saves a pass over the parameters per batch;
    when the learning rate changes (decay, once per epoch), u is rescaled so the update stays
    exactly PyTorch's.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 0.01,
        "momentum": 0.0,
        "nesterov": False,
        "decay": 0.0,
    }

    def __init__(self, params: Sequence[np.ndarray], momentum: float = 0.0, nesterov: bool = False):
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity, self.velocities = _state_like(params) if momentum else (None, [])
        self.lr = 0.0

    @classmethod
    def from_spec(cls, spec: dict, params: Sequence[np.ndarray]) -> "SGD":
        return cls(params, spec["momentum"], spec["nesterov"])

    @staticmethod
    def gradient_scale(lr: float) -> float:
        return lr

    def step(self, params: np.ndarray, scaled_grads: np.ndarray, lr: float) -> None:
        """``params`` and ``scaled_grads`` are the flat buffers (see the module docstring)."""
        if not self.momentum:
            params -= scaled_grads
            return
        decay = self.momentum * (lr / self.lr if self.lr else 1.0)
        self.lr = lr
        u, g = self.velocity, scaled_grads
        u *= decay
        u += g
        if self.nesterov:
            params -= g
            np.multiply(u, self.momentum, out=g)
            params -= g
        else:
            params -= u

    def state(self) -> dict[str, np.ndarray]:
        arrays = {"lr": np.array(self.lr, dtype=np.float64)}
        arrays.update({f"velocity{i}": u for i, u in enumerate(self.velocities)})
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.lr = float(arrays["lr"])
        for i, u in enumerate(self.velocities):
            u[...] = arrays[f"velocity{i}"]


class Adam:
    """Adam (Kingma and Ba), with bias-corrected first and second moments, computed exactly as
    PyTorch's ``torch.optim.Adam``."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 0.001,
        "beta1": 0.9,
        "beta2": 0.999,
        "epsilon": 1e-8,
        "decay": 0.0,
    }

    def __init__(
        self,
        params: Sequence[np.ndarray],
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ):
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.t = 0
        self.moment1, self.moments1 = _state_like(params)
        self.moment2, self.moments2 = _state_like(params)

    @classmethod
    def from_spec(cls, spec: dict, params: Sequence[np.ndarray]) -> "Adam":
        return cls(params, spec["beta1"], spec["beta2"], spec["epsilon"])

    @staticmethod
    def gradient_scale(lr: float) -> float:
        return 1.0

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        """``params`` and ``grads`` are the flat buffers (see the module docstring)."""
        self.t += 1
        correction1 = 1.0 - self.beta1**self.t
        sqrt_correction2 = np.sqrt(1.0 - self.beta2**self.t)
        step_size = lr / correction1
        m, v, g = self.moment1, self.moment2, grads
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        g *= g
        g *= 1.0 - self.beta2
        v += g
        np.sqrt(v, out=g)
        g /= sqrt_correction2
        g += self.epsilon
        np.divide(m, g, out=g)
        g *= step_size
        params -= g

    def state(self) -> dict[str, np.ndarray]:
        arrays = {"t": np.array(self.t, dtype=np.int64)}
        arrays.update({f"moment1_{i}": m for i, m in enumerate(self.moments1)})
        arrays.update({f"moment2_{i}": v for i, v in enumerate(self.moments2)})
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.t = int(arrays["t"])
        for i, (m, v) in enumerate(zip(self.moments1, self.moments2, strict=True)):
            m[...] = arrays[f"moment1_{i}"]
            v[...] = arrays[f"moment2_{i}"]


def _state_like(params: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """A zeroed flat buffer in the parameters' layout, and its view per parameter."""
    return flat_buffer([p.shape for p in params], params[0].dtype)


Optimizer = SGD | Adam
OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam}


def make_optimizer(spec: dict, params: Sequence[np.ndarray]) -> Optimizer:
    """Builds the optimizer a resolved ``training.optimizer`` spec names."""
    return OPTIMIZERS[spec["name"]].from_spec(spec, params)
