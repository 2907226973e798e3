"""Predictions: trained models loaded once per process and kept in a small LRU cache."""

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from model_core import Model


class ModelCache:
    """Deserialized models keyed by id, at most ``max_size``, least recently used evicted first.

    Safe to share between the threads of one process; each process has its own.
    """

    def __init__(self, max_size: int):
        self.max_size = max_size
        self._models: OrderedDict[int, Model] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: int, load_bytes: Callable[[], bytes | None]) -> Model | None:
        """The model ``model_id``, read with ``load_bytes`` only when not cached; None if gone."""
        with self._lock:
            model = self._models.get(model_id)
            if model is not None:
                self._models.move_to_end(model_id)
                return model
        data = load_bytes()
        if data is None:
            return None
        model = Model.from_bytes(data)
        with self._lock:
            self._models[model_id] = model
            while len(self._models) > self.max_size:
                self._models.popitem(last=False)
        return model

    def evict(self, model_id: int) -> None:
        with self._lock:
            self._models.pop(model_id, None)


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
