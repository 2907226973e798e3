"""Learning-rate schedules: the rate of each epoch, as ``torch.optim.lr_scheduler`` computes it.

A schedule answers ``rate(epoch)`` for epochs counted from 1 and is told each finished epoch's
monitored loss by ``observe(epoch, loss)`` (only the plateau schedule listens). Step, exponential
and cosine are closed forms of the epoch; the plateau schedule keeps counters, which ``state()``
gives as arrays for a checkpoint. :class:`WarmUp` ramps the rate up linearly over its first
epochs and then runs another schedule from that schedule's own epoch 1.

``SCHEDULES`` is the registry of the names a spec's ``training.schedule.name`` takes; each
class's ``REQUIRED`` fields and its ``DEFAULTS`` are the fields it takes, in the order a resolved
spec lists them. The optimizer owns its schedule (:mod:`model_core.optimizers`).
"""

import math
from typing import Any, ClassVar

import numpy as np


class Schedule:
    """A rate per epoch that listens to nothing; subclasses say how it falls."""

    DEFAULTS: ClassVar[dict[str, Any]] = {}
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    def __init__(self, learning_rate: float):
        self.learning_rate = learning_rate

    def rate(self, epoch: int) -> float:
        return self.learning_rate

    def observe(self, epoch: int, loss: float) -> None:
        """``loss``: the monitored loss of finished ``epoch`` (validation, else training)."""

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Puts back what :meth:`state` gave."""


class InverseTimeDecay(Schedule):
    """``optimizer.decay``: lr / (1 + decay * (epoch - 1)); a decay of 0 keeps lr."""

    def __init__(self, learning_rate: float, decay: float):
        super().__init__(learning_rate)
        self.decay = decay

    def rate(self, epoch: int) -> float:
        return self.learning_rate / (1.0 + self.decay * (epoch - 1))


class StepDecay(Schedule):
    """``StepLR``: lr * gamma ** ((epoch - 1) // step_size)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"gamma": 0.1}
    REQUIRED = ("step_size",)

    def __init__(self, learning_rate: float, step_size: int, gamma: float):
        super().__init__(learning_rate)
        self.step_size, self.gamma = step_size, gamma

    def rate(self, epoch: int) -> float:
        return self.learning_rate * self.gamma ** ((epoch - 1) // self.step_size)


class ExponentialDecay(Schedule):
    """``ExponentialLR``: lr * gamma ** (epoch - 1)."""

    REQUIRED = ("gamma",)

    def __init__(self, learning_rate: float, gamma: float):
        super().__init__(learning_rate)
        self.gamma = gamma

    def rate(self, epoch: int) -> float:
        return self.learning_rate * self.gamma ** (epoch - 1)


class CosineAnnealing(Schedule):
    """``CosineAnnealingLR`` up to ``t_max``: eta_min + (lr - eta_min) * (1 + cos(pi * t /
    t_max)) / 2 with t = epoch - 1; from t = t_max on it stays at eta_min (PyTorch's would
    climb again)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"eta_min": 0.0}
    REQUIRED = ("t_max",)

    def __init__(self, learning_rate: float, t_max: int, eta_min: float):
        super().__init__(learning_rate)
        self.t_max, self.eta_min = t_max, eta_min

    def rate(self, epoch: int) -> float:
        t = epoch - 1
        if t >= self.t_max:
            return self.eta_min
        cosine = 1.0 + math.cos(math.pi * t / self.t_max)
        return self.eta_min + (self.learning_rate - self.eta_min) * cosine / 2.0


class ReduceOnPlateau(Schedule):
    """``ReduceLROnPlateau`` in mode min with a relative threshold, no cooldown: when the
    monitored loss has not gone below best * (1 - threshold) for more than ``patience`` epochs,
    the rate becomes max(rate * factor, min_lr) (unless that changes it by 1e-8 or less, as
    PyTorch skips such a step) and the count starts again."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "factor": 0.1,
        "patience": 10,
        "threshold": 1e-4,
        "min_lr": 0.0,
    }
    # PyTorch's ``eps``: a reduction smaller than this is ignored.
    MIN_CHANGE = 1e-8

    def __init__(
        self, learning_rate: float, factor: float, patience: int, threshold: float, min_lr: float
    ):
        super().__init__(learning_rate)
        self.factor, self.patience, self.threshold, self.min_lr = (
            factor,
            patience,
            threshold,
            min_lr,
        )
        self.current = learning_rate
        self.best = math.inf
        self.bad_epochs = 0

    def rate(self, epoch: int) -> float:
        return self.current

    def observe(self, epoch: int, loss: float) -> None:
        if loss < self.best * (1.0 - self.threshold):
            self.best, self.bad_epochs = loss, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            reduced = max(self.current * self.factor, self.min_lr)
            if self.current - reduced > self.MIN_CHANGE:
                self.current = reduced
            self.bad_epochs = 0

    def state(self) -> dict[str, np.ndarray]:
        return {
            "current": np.array(self.current, dtype=np.float64),
            "best": np.array(self.best, dtype=np.float64),
            "bad_epochs": np.array(self.bad_epochs, dtype=np.int64),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.current = float(arrays["current"])
        self.best = float(arrays["best"])
        self.bad_epochs = int(arrays["bad_epochs"])


class WarmUp(Schedule):
    """lr * epoch / epochs for the first ``epochs`` epochs, then ``then`` from its epoch 1 (a
    plateau schedule hears only the losses after the warm-up)."""

    def __init__(self, learning_rate: float, epochs: int, then: Schedule):
        super().__init__(learning_rate)
        self.epochs, self.then = epochs, then

    def rate(self, epoch: int) -> float:
        if epoch <= self.epochs:
            return self.learning_rate * epoch / self.epochs
        return self.then.rate(epoch - self.epochs)

    def observe(self, epoch: int, loss: float) -> None:
        if epoch > self.epochs:
            self.then.observe(epoch - self.epochs, loss)

    def state(self) -> dict[str, np.ndarray]:
        return self.then.state()

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.then.load_state(arrays)


SCHEDULES: dict[str, type[Schedule]] = {
    "step": StepDecay,
    "exponential": ExponentialDecay,
    "cosine": CosineAnnealing,
    "plateau": ReduceOnPlateau,
}


def make_schedule(training: dict) -> Schedule:
    """The schedule a resolved training spec asks for: ``schedule`` (else the optimizer's
    inverse-time ``decay``), after ``warmup_epochs`` of warm-up when there are any."""
    optimizer, spec = training["optimizer"], training["schedule"]
    learning_rate = optimizer["learning_rate"]
    if spec is None:
        schedule: Schedule = InverseTimeDecay(learning_rate, optimizer["decay"])
    else:
        settings = {key: value for key, value in spec.items() if key != "name"}
        schedule = SCHEDULES[spec["name"]](learning_rate, **settings)
    if training["warmup_epochs"]:
        return WarmUp(learning_rate, training["warmup_epochs"], schedule)
    return schedule
