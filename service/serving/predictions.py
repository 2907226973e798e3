"""Predictions and weights of a trained model, as plain values."""

import json
from typing import Any

import numpy as np

from model_core import Model
from model_core.serialization import weight_arrays
from service.vocabulary import DataError


def as_lists(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """:func:`prediction_arrays`' answer as plain lists, for JSON."""
    return {name: array.tolist() for name, array in arrays.items()}


def prediction_arrays(
    model: Model, x: np.ndarray, max_bytes: int, field: str
) -> dict[str, np.ndarray]:
    """What a prediction answers, as arrays: ``predictions`` (n_samples,) labels or values
    ((n_samples, n_outputs) for several targets) and, for classification, ``probabilities``
    (n_samples, n_classes), from one forward pass whose activations take at most ``max_bytes``
    at a time (MAX_REQUEST_MEMORY: a wide model predicts fewer rows per chunk). A row whose
    outputs overflowed is a ``DataError`` on ``field[row]``."""
    if model.task != "classification":
        arrays = {"predictions": model.predict(x, max_bytes)}
    else:
        labels, probabilities = model.predict_with_proba(x, max_bytes)
        arrays = {"predictions": labels, "probabilities": probabilities}
    check_finite_outputs(model, arrays, field)
    return arrays


def check_finite_outputs(model: Model, arrays: dict[str, np.ndarray], field: str) -> None:
    """Inputs within the dtype's range can still overflow inside the network (3e38 times a
    weight of 2, in float32): such a row has no answer to give, and JSON has no NaN."""
    values = arrays.get("probabilities", arrays["predictions"])
    if np.isfinite(values).all():
        return
    row = int(np.argwhere(~np.isfinite(values.reshape(len(values), -1)))[0][0])
    message = (
        f"the model's outputs for this row are not finite: its {model.dtype.name} activations"
        " overflowed on values this large"
    )
    raise DataError(f"{field}[{row}]", message, "A row the model cannot answer.")


def standardization(model: Model) -> dict[str, list[float]] | None:
    """``{"mean": (n_features,), "scale": (n_features,)}`` that raw rows go through first,
    ``(x - mean) / scale``, or None when the model takes raw rows as they are."""
    if model.mean is None:
        return None
    return {"mean": model.mean.tolist(), "scale": model.scale.tolist()}


# What the weights document costs in memory per parameter (Python floats in lists, then their
# JSON text): 79 bytes measured on a 2M-parameter model (issue 21).
WEIGHTS_JSON_BYTES_PER_PARAMETER = 80


def model_bytes(model: Model) -> int:
    """The bytes of a model's arrays (weights, biases and standardisation)."""
    arrays = [array for pair in model.weights for array in pair]
    arrays += [array for array in (model.mean, model.scale) if array is not None]
    return sum(array.nbytes for array in arrays)


def weights_document_bytes(model: Model) -> int:
    """About what building and sending ``weights_document(model)`` takes in memory."""
    parameters = sum(w.size + b.size for w, b in model.weights)
    return parameters * WEIGHTS_JSON_BYTES_PER_PARAMETER


def weights_document(model: Model) -> dict[str, Any]:
    """All a forward pass needs: ``{"task", "dtype", "layers": [{"W": (inputs, units),
    "b": (units,), "activation"}, ...], "standardization", "classes"}``, arrays as lists."""
    return {
        "task": model.task,
        "dtype": model.dtype.name,
        "layers": [
            {"W": w.tolist(), "b": b.tolist(), "activation": activation.name}
            for (w, b), activation in zip(model.weights, model.activations, strict=True)
        ],
        "standardization": standardization(model),
        "classes": model.classes,
    }


def weights_as_arrays(model: Model) -> dict[str, np.ndarray]:
    """What :func:`weights_document` holds as ``.npz`` members: ``W0, b0, W1, b1, ...``, then
    ``mean`` and ``scale`` when standardized, ``classes`` for classification, and ``spec``."""
    arrays = weight_arrays(model.weights)
    if model.mean is not None:
        arrays.update(mean=model.mean, scale=model.scale)
    if model.classes is not None:
        arrays["classes"] = classes_array(model.classes)
    arrays["spec"] = weights_spec(model)
    return arrays


def weights_spec(model: Model) -> np.ndarray:
    """A 0-d fixed-width string array holding the JSON ``{"task", "dtype", "layers": [{"units",
    "activation"}, ...], "standardized"}``: what the other members do not say."""
    spec = {
        "task": model.task,
        "dtype": model.dtype.name,
        "layers": [
            {"units": w.shape[1], "activation": activation.name}
            for (w, _), activation in zip(model.weights, model.activations, strict=True)
        ],
        "standardized": model.mean is not None,
    }
    return np.array(json.dumps(spec))


def classes_array(classes: list) -> np.ndarray:
    """The labels as a numeric or fixed-width string array, which ``np.load`` reads without
    pickle; an object array (a None among them, say) raises ``ValueError``."""
    array = np.asarray(classes)
    if array.dtype.kind not in "biufU":
        raise ValueError(f"classes of dtype {array.dtype} cannot be stored without pickle")
    return array
