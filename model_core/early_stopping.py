"""Early stopping: patience on the monitored loss, and the best epoch's weights to go back to."""

import math
from dataclasses import dataclass

from model_core.network import Weights, copy_weights


def monitored_loss(record: dict) -> float:
    """The loss an epoch record is judged by: validation if there is any, else training (early
    stopping and the plateau schedule both watch it)."""
    return record["val_loss"] if record["val_loss"] is not None else record["train_loss"]


@dataclass
class EarlyStopping:
    """Patience bookkeeping on the monitored loss (validation if there is any, else training).

    ``best_weights`` is a copy of ``[(W, b), ...]`` at ``best_epoch`` when ``restore_best``.
    """

    patience: int
    min_delta: float
    restore_best: bool
    best_loss: float = math.inf
    best_epoch: int = 0
    wait: int = 0
    best_weights: list | None = None

    @classmethod
    def from_spec(cls, spec: dict | None) -> "EarlyStopping | None":
        """From a resolved ``training.early_stopping``; None when early stopping is off."""
        return None if spec is None else cls(**spec)

    def update(self, record: dict, weights: Weights) -> None:
        """Records one epoch (its record, and the weights after it) against the best so far."""
        loss = monitored_loss(record)
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.wait = loss, record["epoch"], 0
            if self.restore_best:
                self.best_weights = copy_weights(weights)
        else:
            self.wait += 1

    @property
    def exhausted(self) -> bool:
        return self.wait >= self.patience

    def state(self) -> dict:
        """The counters a checkpoint saves (the best weights travel as arrays)."""
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
