"""Predictions and weights of a trained model, as plain values."""

from typing import Any

import numpy as np

from model_core import Model


def predict(model: Model, x: np.ndarray) -> dict[str, Any]:
    """Predictions for rows ``x`` (n_samples, n_features); probabilities for classification."""
    result: dict[str, Any] = {"predictions": model.predict(x).tolist()}
    if model.task == "classification":
        result["probabilities"] = model.predict_proba(x).tolist()
    return result


def weights_as_lists(model: Model) -> list[dict[str, list]]:
    """``[{"W": (inputs, units) nested lists, "b": (units,) list}, ...]``, one per layer."""
    return [{"W": w.tolist(), "b": b.tolist()} for w, b in model.weights]


def weights_as_arrays(model: Model) -> dict[str, np.ndarray]:
    """``{"W0": ..., "b0": ..., "W1": ...}`` for ``np.savez``."""
    arrays = {}
    for index, (w, b) in enumerate(model.weights):
        arrays[f"W{index}"], arrays[f"b{index}"] = w, b
    return arrays
