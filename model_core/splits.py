"""Which rows train and which rows evaluate: explicit validation data, a seeded random split, or
no validation at all. Rows are named by index, so the data set is never copied."""

from dataclasses import dataclass

import numpy as np

from model_core.errors import SpecError
from model_core.preprocessing import Targets, as_features, encode_targets
from model_core.weighting import row_weights


@dataclass(frozen=True)
class EvaluationSet:
    """Rows to evaluate on: ``rows`` of ``x``, their encoded targets and class indices, and
    the rows' weights (None: unweighted), all indexed like ``x``."""

    x: np.ndarray
    rows: np.ndarray
    targets: np.ndarray
    labels: np.ndarray | None
    weights: np.ndarray | None = None


def split_rows(
    rng: np.random.Generator,
    x: np.ndarray,
    targets: Targets,
    task: str,
    validation_split: float,
    validation_data=None,
    weights: np.ndarray | None = None,
    per_class: np.ndarray | None = None,
) -> tuple[np.ndarray, EvaluationSet | None]:
    """Training row indices (n_train,) of ``x`` and the evaluation set: ``validation_data``
    ``(X_val, y_val)`` or ``(X_val, y_val, sample_weight_val)`` when given, else a random
    ``validation_split`` fraction of the rows, else None. ``weights`` are the rows' weights
    (None: unweighted) and ``per_class`` the class weights explicit validation data gets too."""
    all_rows = np.arange(len(x))
    if validation_data is not None:
        validation = explicit_validation_set(validation_data, x, targets, task, per_class)
        return all_rows, validation
    if not validation_split:
        return all_rows, None
    train_rows, val_rows = random_split(rng, len(x), validation_split)
    return train_rows, EvaluationSet(x, val_rows, targets.matrix, targets.labels, weights)


def explicit_validation_set(
    validation_data,
    x: np.ndarray,
    targets: Targets,
    task: str,
    per_class: np.ndarray | None = None,
) -> EvaluationSet:
    """``(X_val, y_val[, sample_weight_val])`` checked and encoded like the training data, with
    its classes; weighted by its sample weights and the training's class weights, if any."""
    x_val, y_val, *sample_weight = validation_data
    x_val = as_features(x_val, x.dtype, "validation_data.X", x.shape[1])
    encoded = encode_targets(
        y_val,
        task,
        targets.matrix.shape[1],
        x.dtype,
        len(x_val),
        "validation_data.y",
        targets.classes,
    )
    val_weights = row_weights(
        sample_weight[0] if sample_weight else None,
        per_class,
        encoded.labels,
        len(x_val),
        x.dtype,
        "validation_data.sample_weight",
    )
    return EvaluationSet(x_val, np.arange(len(x_val)), encoded.matrix, encoded.labels, val_weights)


def run_seeds(seed: int) -> list[np.random.SeedSequence]:
    """The four independent streams of a run with ``seed``: the split, the initial weights, the
    shuffles and the dropout masks. (Spawned children do not depend on how many are spawned:
    the first three are those of the runs made before dropout existed.)"""
    return np.random.SeedSequence(seed).spawn(4)


def training_rows(n_samples: int, seed: int, validation_split: float) -> np.ndarray:
    """The rows a run with ``seed`` and ``validation_split`` trained on, as the Trainer chose
    them: what a trained model's input profile is computed over, again after the fact."""
    if not validation_split:
        return np.arange(n_samples)
    split_seed = run_seeds(seed)[0]
    return random_split(np.random.default_rng(split_seed), n_samples, validation_split)[0]


def random_split(
    rng: np.random.Generator, n_samples: int, validation_split: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted training and validation row indices, ``validation_split`` of them validating."""
    n_val = int(round(n_samples * validation_split))
    if n_val < 1 or n_val >= n_samples:
        raise SpecError(
            "training",
            "validation_split",
            f"{validation_split} of {n_samples} rows leaves no validation or no training rows",
        )
    order = rng.permutation(n_samples)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
