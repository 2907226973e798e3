"""Predictions and weights of a trained model, as plain values."""

from typing import Any

import numpy as np

from model_core import Model
from model_core.serialization import weight_arrays


def predict(model: Model, x: np.ndarray) -> dict[str, Any]:
    """Predictions for rows ``x`` (n_samples, n_features); probabilities for classification."""
    if model.task != "classification":
        return {"predictions": model.predict(x).tolist()}
    labels, probabilities = model.predict_with_proba(x)
    return {"predictions": labels.tolist(), "probabilities": probabilities.tolist()}


def weights_as_lists(model: Model) -> list[dict[str, list]]:
    """``[{"W": (inputs, units) nested lists, "b": (units,) list}, ...]``, one per layer."""
    return [{"W": w.tolist(), "b": b.tolist()} for w, b in model.weights]


def weights_as_arrays(model: Model) -> dict[str, np.ndarray]:
    """``{"W0": ..., "b0": ..., "W1": ...}`` for ``np.savez``, as model_core names them."""
    return weight_arrays(model.weights)
