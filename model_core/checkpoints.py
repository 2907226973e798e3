"""Checkpoints: the full state of a training run after an epoch, as ``.npz`` bytes, and back.

A checkpoint holds the specs, the epoch, the history, the states of the shuffling and dropout
rngs and the early-stopping counters in its header; the weights (``W0, b0, ...``), the
optimizer's state (``optimizer.*``, its schedule's counters as ``optimizer.schedule.*``) and the
best epoch's weights (``best.W0, ...``) as arrays. Restoring it into a
run built from the same data and specs continues bit for bit as if it had never stopped.
"""

from typing import Protocol

import numpy as np

from model_core.early_stopping import EarlyStopping
from model_core.errors import SpecError
from model_core.optimizers import Optimizer
from model_core.serialization import pack, unpack, weight_arrays, weights_from_arrays
from model_core.specs import TRAINING_DEFAULTS

CHECKPOINT_FORMAT = "backprop-checkpoint"
OPTIMIZER_PREFIX = "optimizer."
BEST_PREFIX = "best."


class TrainingRun(Protocol):
    """What a checkpoint saves and restores (a :class:`model_core.Trainer` is one)."""

    network: dict
    training: dict
    epoch: int
    history: list[dict]
    rng: np.random.Generator
    dropout_rng: np.random.Generator
    weights: list[tuple[np.ndarray, np.ndarray]]
    optimizer: Optimizer
    early_stopping: EarlyStopping | None


def save_checkpoint(run: TrainingRun) -> bytes:
    """The run's state after its last finished epoch, as ``.npz`` bytes."""
    stopping = run.early_stopping
    header = {
        "network": run.network,
        "training": run.training,
        "epoch": run.epoch,
        "history": run.history,
        "rng": run.rng.bit_generator.state,
        "dropout_rng": run.dropout_rng.bit_generator.state,
        "early_stopping": None if stopping is None else stopping.state(),
    }
    arrays = weight_arrays(run.weights)
    arrays.update({OPTIMIZER_PREFIX + k: v for k, v in run.optimizer.state().items()})
    if stopping is not None and stopping.best_weights is not None:
        arrays.update({BEST_PREFIX + k: v for k, v in weight_arrays(stopping.best_weights).items()})
    return pack(CHECKPOINT_FORMAT, header, arrays)


def read_checkpoint(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of checkpoint bytes; raises CorruptFileError on anything else."""
    return unpack(CHECKPOINT_FORMAT, data)


def restore_checkpoint(run: TrainingRun, header: dict, arrays: dict[str, np.ndarray]) -> None:
    """Puts back into ``run`` the state :func:`save_checkpoint` saved; the specs must match
    (``epochs`` may grow)."""
    check_same_specs(run, header)
    n_layers = len(run.weights)
    for (w, b), (saved_w, saved_b) in zip(
        run.weights, weights_from_arrays(arrays, n_layers), strict=True
    ):
        w[...], b[...] = saved_w, saved_b
    run.optimizer.load_state(
        {k[len(OPTIMIZER_PREFIX) :]: v for k, v in arrays.items() if k.startswith(OPTIMIZER_PREFIX)}
    )
    run.rng.bit_generator.state = header["rng"]
    if "dropout_rng" in header:  # older checkpoints: made without dropout, never drawn from
        run.dropout_rng.bit_generator.state = header["dropout_rng"]
    run.epoch = header["epoch"]
    run.history = header["history"]
    if run.early_stopping is not None:
        run.early_stopping.load_state(header["early_stopping"])
        if f"{BEST_PREFIX}W0" in arrays:
            run.early_stopping.best_weights = weights_from_arrays(arrays, n_layers, BEST_PREFIX)


def check_same_specs(run: TrainingRun, header: dict) -> None:
    """Raises SpecError unless the checkpoint's specs are the run's, but for ``epochs``.

    A field the checkpoint lacks was added since it was made, and counts as its default: a
    training field (``class_weight``, ``schedule``...) or a layer's ``dropout`` takes its
    default, and a field the run leaves at None is the same; so a job checkpointed before an
    upgrade resumes after it.
    """
    for section in ("network", "training"):
        saved, current = dict(header.get(section) or {}), dict(getattr(run, section))
        if section == "training":
            saved = {**TRAINING_DEFAULTS, **saved}
        else:
            saved["layers"] = [{"dropout": 0.0, **layer} for layer in saved.get("layers", [])]
        saved.pop("epochs", None)
        current.pop("epochs", None)
        current = {k: v for k, v in current.items() if k in saved or v is not None}
        if saved != current:
            raise SpecError(
                "training",
                "resume_from",
                f"the checkpoint was made with a different {section} spec",
            )
