"""The trained model: weights, activations and the preprocessing that raw rows go through."""

from collections.abc import Sequence

import numpy as np

from model_core.activations import ACTIVATIONS, Activation
from model_core.errors import CorruptFileError, SpecError
from model_core.preprocessing import CHUNK_ROWS, as_features
from model_core.serialization import pack, unpack, weight_arrays, weights_from_arrays

MODEL_FORMAT = "backprop-model"


def forward(
    x: np.ndarray,
    weights: Sequence[tuple[np.ndarray, np.ndarray]],
    activations: Sequence[Activation],
    outputs: Sequence[np.ndarray],
) -> np.ndarray:
    """Writes each layer's activation ``f(a @ W + b)`` into ``outputs``; returns the last.

    ``x`` is (n_samples, n_features); ``outputs[i]`` is (n_samples, units of layer i).
    """
    a = x
    for (w, b), activation, out in zip(weights, activations, outputs, strict=True):
        np.matmul(a, w, out=out)
        out += b
        activation.forward(out)
        a = out
    return a


def standardize_into(x: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None) -> None:
    """In place: (x - mean) / scale, or nothing when the model does not standardise."""
    if mean is not None:
        x -= mean
        x /= scale


class Model:
    """A feedforward network ready to predict on raw rows.

    ``weights`` is ``[(W, b), ...]`` with W of shape (inputs, units) and b of shape (units,).
    ``mean`` and ``scale`` (n_features,) standardise raw rows; ``classes`` are the original labels
    in the order of the output units (classification only).
    """

    def __init__(
        self,
        network: dict,
        weights: list,
        task: str,
        classes: list | None = None,
        mean: np.ndarray | None = None,
        scale: np.ndarray | None = None,
        target_ndim: int = 1,
        training: dict | None = None,
    ):
        self.network = network
        self.weights = [(np.asarray(w), np.asarray(b)) for w, b in weights]
        self.task = task
        self.classes = classes
        self.mean = mean
        self.scale = scale
        self.target_ndim = target_ndim
        self.training = training
        self.dtype = np.dtype(network["dtype"])
        self.activations = [ACTIVATIONS[layer["activation"]] for layer in network["layers"]]

    @property
    def n_features(self) -> int:
        return self.weights[0][0].shape[0]

    def forward(self, x) -> np.ndarray:
        """Output-layer activations (n_samples, units) for raw rows, computed in chunks."""
        x = as_features(x, self.dtype, "X", self.n_features)
        result = np.empty((len(x), self.weights[-1][0].shape[1]), dtype=self.dtype)
        for start in range(0, len(x), CHUNK_ROWS):
            chunk = x[start : start + CHUNK_ROWS]
            if self.mean is not None:  # the caller's rows are never modified
                chunk = chunk.copy()
                standardize_into(chunk, self.mean, self.scale)
            outputs = [
                np.empty((len(chunk), w.shape[1]), dtype=self.dtype) for w, _ in self.weights
            ]
            result[start : start + len(chunk)] = forward(
                chunk, self.weights, self.activations, outputs
            )
        return result

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes``."""
        self._require_classification("predict_proba")
        return output_probabilities(self.forward(x), self.activations[-1].name)

    def predict(self, x) -> np.ndarray:
        """Labels (n_samples,) for classification; values (n_samples,) or (n, k) for regression."""
        return self._decode(self.forward(x))

    def predict_with_proba(self, x) -> tuple[np.ndarray, np.ndarray]:
        """``predict(x)`` and ``predict_proba(x)`` from one forward pass (classification)."""
        self._require_classification("predict_with_proba")
        outputs = self.forward(x)
        return self._decode(outputs), output_probabilities(outputs, self.activations[-1].name)

    def _require_classification(self, method: str) -> None:
        if self.task != "classification":
            raise SpecError("data", "task", f"{method} is for classification models")

    def _decode(self, outputs: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            return np.asarray(self.classes)[class_indices(outputs)]
        return outputs[:, 0] if self.target_ndim == 1 else outputs

    def to_bytes(self) -> bytes:
        header = {
            "network": self.network,
            "task": self.task,
            "classes": self.classes,
            "target_ndim": self.target_ndim,
            "training": self.training,
            "standardized": self.mean is not None,
        }
        arrays = weight_arrays(self.weights)
        if self.mean is not None:
            arrays.update(mean=self.mean, scale=self.scale)
        return pack(MODEL_FORMAT, header, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Model":
        header, arrays = unpack(MODEL_FORMAT, data)
        try:
            n_layers = len(header["network"]["layers"])
            standardized = header["standardized"]
            return cls(
                header["network"],
                weights_from_arrays(arrays, n_layers),
                header["task"],
                header["classes"],
                arrays["mean"] if standardized else None,
                arrays["scale"] if standardized else None,
                header["target_ndim"],
                header["training"],
            )
        except (KeyError, TypeError) as error:
            raise CorruptFileError(f"model file is incomplete: {error}") from None


def class_indices(outputs: np.ndarray) -> np.ndarray:
    """The predicted class of each row: argmax, or a 0.5 threshold for a single output unit."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] > 0.5).astype(np.intp)
    return outputs.argmax(axis=1)


def output_probabilities(outputs: np.ndarray, activation: str) -> np.ndarray:
    """Probabilities from the output layer: softmax as is, one sigmoid unit as (1 - p, p).

    Other outputs (several sigmoids, or a squared-error output) are clipped at zero and normalised
    per row, as scikit-learn does for one-vs-rest.
    """
    if outputs.shape[1] == 1:
        return np.hstack([1.0 - outputs, outputs])
    if activation == "softmax":
        return outputs
    clipped = np.clip(outputs, 0.0, None)
    totals = clipped.sum(axis=1, keepdims=True)
    uniform = np.full_like(clipped, 1.0 / clipped.shape[1])
    return np.divide(clipped, totals, out=uniform, where=totals > 0)
