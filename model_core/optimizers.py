"""Gradient-descent optimizers: objects that own their state, their learning-rate schedule and
gradient clipping, and update parameters in place.

An optimizer is built from the list of parameter arrays, views of one flat buffer made by
:func:`model_core.buffers.flat_buffer`; ``step`` receives that flat buffer and the gradients'
(the same layout), so that each pass of an update is one NumPy call whatever the number of
layers. Its own state lives in a buffer of the same layout; ``state()`` gives it per parameter,
with its schedule's counters.

``start_epoch(epoch)`` sets the epoch's learning rate from the schedule (:mod:`model_core.
schedules`) and ``end_epoch(epoch, loss)`` tells the schedule the monitored loss.
``gradient_scale()`` tells the backward pass what to multiply the gradients by while it computes
them: SGD asks for the learning rate, which folds it into the output error for free and saves a
pass over every parameter per batch; Adam needs the raw gradient. ``step`` may overwrite the
gradient arrays: they are scratch space once the update is done.

``OPTIMIZERS`` is the one registry of optimizer names; each class's ``DEFAULTS`` are the spec
fields it takes, in the order a resolved spec lists them, and ``from_spec`` builds it from them.
"""

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from model_core.buffers import flat_buffer
from model_core.parallel import SERIAL, Split
from model_core.schedules import Schedule, make_schedule

SCHEDULE_PREFIX = "schedule."
# PyTorch's clip_grad_norm_ adds this to the norm before dividing by it.
CLIP_EPSILON = 1e-6


def clip_global_norm(grads: np.ndarray, clip_norm: float, scale: float = 1.0) -> None:
    """Scales ``grads`` (one flat buffer, times ``scale``) by min(1, clip_norm / (norm + 1e-6)),
    norm being the L2 norm of all the gradients together, as ``torch.nn.utils.clip_grad_norm_``.
    A scale of 0 (a learning rate of 0 folded in) leaves nothing to clip."""
    if not scale:
        return
    norm = math.sqrt(float(np.vdot(grads, grads))) / scale
    coefficient = clip_norm / (norm + CLIP_EPSILON)
    if coefficient < 1.0:
        grads *= coefficient


class Optimizer:
    """What every optimizer does around its update rule: the epoch's learning rate from its
    schedule, and the gradient's norm clipped before each step (``clip_norm``, None: never)."""

    def __init__(self, schedule: Schedule, clip_norm: float | None):
        self.schedule = schedule
        self.clip_norm = clip_norm
        self.learning_rate = 0.0

    def start_epoch(self, epoch: int) -> float:
        """Sets and returns the learning rate of ``epoch`` (from 1)."""
        self.learning_rate = self.schedule.rate(epoch)
        return self.learning_rate

    def end_epoch(self, epoch: int, loss: float) -> None:
        """``loss``: finished ``epoch``'s monitored loss (validation, else training)."""
        self.schedule.observe(epoch, loss)

    def gradient_scale(self) -> float:
        return 1.0

    def step(self, params: np.ndarray, grads: np.ndarray, split: Split = SERIAL) -> None:
        """``params`` and ``grads`` (times :meth:`gradient_scale`) are the flat buffers.
        ``split`` runs the update by slices of them over its threads (same bits); the clipping
        norm, a sum over all of them, is not split."""
        if self.clip_norm is not None:
            clip_global_norm(grads, self.clip_norm, self.gradient_scale())
        self.update(params, grads, split)

    def update(self, params: np.ndarray, grads: np.ndarray, split: Split = SERIAL) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """The update rule's state and the schedule's (``schedule.*``), as arrays."""
        arrays = self.update_state()
        arrays.update({SCHEDULE_PREFIX + k: v for k, v in self.schedule.state().items()})
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.load_update_state(arrays)
        n = len(SCHEDULE_PREFIX)
        self.schedule.load_state({k[n:]: v for k, v in arrays.items() if k[:n] == SCHEDULE_PREFIX})

    def update_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def load_update_state(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``:

    v = momentum * v + g;  p -= lr * v       (Nesterov: p -= lr * (g + momentum * v))

    It receives lr * g and keeps u = lr * v, which saves a pass over the parameters per batch;
    when the learning rate changes (its schedule, once per epoch), u is rescaled so the update
    stays exactly PyTorch's.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 0.01,
        "momentum": 0.0,
        "nesterov": False,
        "decay": 0.0,
    }

    def __init__(
        self,
        params: Sequence[np.ndarray],
        schedule: Schedule,
        clip_norm: float | None = None,
        momentum: float = 0.0,
        nesterov: bool = False,
    ):
        super().__init__(schedule, clip_norm)
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity, self.velocities = _state_like(params) if momentum else (None, [])
        self.lr = 0.0  # the learning rate u was last scaled by

    @classmethod
    def from_spec(
        cls, spec: dict, params: Sequence[np.ndarray], schedule: Schedule, clip_norm: float | None
    ) -> "SGD":
        return cls(params, schedule, clip_norm, spec["momentum"], spec["nesterov"])

    def gradient_scale(self) -> float:
        return self.learning_rate

    def update(self, params: np.ndarray, scaled_grads: np.ndarray, split: Split = SERIAL) -> None:
        if not self.momentum:
            params -= scaled_grads
            return
        lr = self.learning_rate
        decay = self.momentum * (lr / self.lr if self.lr else 1.0)
        self.lr = lr
        u, g = self.velocity, scaled_grads
        if split.splits_items(len(params)):
            split.by_items(lambda s: self.apply(params[s], g[s], u[s], decay), len(params))
        else:
            self.apply(params, g, u, decay)

    def apply(self, params: np.ndarray, g: np.ndarray, u: np.ndarray, decay: float) -> None:
        """The momentum update of (a slice of) the flat buffers."""
        u *= decay
        u += g
        if self.nesterov:
            params -= g
            np.multiply(u, self.momentum, out=g)
            params -= g
        else:
            params -= u

    def update_state(self) -> dict[str, np.ndarray]:
        arrays = {"lr": np.array(self.lr, dtype=np.float64)}
        arrays.update({f"velocity{i}": u for i, u in enumerate(self.velocities)})
        return arrays

    def load_update_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.lr = float(arrays["lr"])
        for i, u in enumerate(self.velocities):
            u[...] = arrays[f"velocity{i}"]


class Adam(Optimizer):
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
        schedule: Schedule,
        clip_norm: float | None = None,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ):
        super().__init__(schedule, clip_norm)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.t = 0
        self.moment1, self.moments1 = _state_like(params)
        self.moment2, self.moments2 = _state_like(params)

    @classmethod
    def from_spec(
        cls, spec: dict, params: Sequence[np.ndarray], schedule: Schedule, clip_norm: float | None
    ) -> "Adam":
        return cls(params, schedule, clip_norm, spec["beta1"], spec["beta2"], spec["epsilon"])

    def update(self, params: np.ndarray, grads: np.ndarray, split: Split = SERIAL) -> None:
        lr = self.learning_rate
        self.t += 1
        correction1 = 1.0 - self.beta1**self.t
        sqrt_correction2 = np.sqrt(1.0 - self.beta2**self.t)
        step_size = lr / correction1
        m, v = self.moment1, self.moment2
        if split.splits_items(len(params)):
            split.by_items(
                lambda s: self.apply(params[s], grads[s], m[s], v[s], sqrt_correction2, step_size),
                len(params),
            )
        else:
            self.apply(params, grads, m, v, sqrt_correction2, step_size)

    def apply(
        self,
        params: np.ndarray,
        g: np.ndarray,
        m: np.ndarray,
        v: np.ndarray,
        sqrt_correction2: float,
        step_size: float,
    ) -> None:
        """The update of (a slice of) the flat buffers, given the step's corrections."""
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

    def update_state(self) -> dict[str, np.ndarray]:
        arrays = {"t": np.array(self.t, dtype=np.int64)}
        arrays.update({f"moment1_{i}": m for i, m in enumerate(self.moments1)})
        arrays.update({f"moment2_{i}": v for i, v in enumerate(self.moments2)})
        return arrays

    def load_update_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.t = int(arrays["t"])
        for i, (m, v) in enumerate(zip(self.moments1, self.moments2, strict=True)):
            m[...] = arrays[f"moment1_{i}"]
            v[...] = arrays[f"moment2_{i}"]


def _state_like(params: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """A zeroed flat buffer in the parameters' layout, and its view per parameter."""
    return flat_buffer([p.shape for p in params], params[0].dtype)


OPTIMIZERS: dict[str, type[SGD | Adam]] = {"sgd": SGD, "adam": Adam}


def make_optimizer(training: dict, params: Sequence[np.ndarray]) -> Optimizer:
    """Builds the optimizer a resolved training spec names (``optimizer``), with its schedule
    (``schedule``, ``warmup_epochs``, else the optimizer's ``decay``) and ``clip_norm``."""
    spec = training["optimizer"]
    schedule = make_schedule(training)
    return OPTIMIZERS[spec["name"]].from_spec(spec, params, schedule, training["clip_norm"])
