"""The network: its layer shapes, the forward and backward passes, and the trained model.

``weights`` is ``[(W, b), ...]`` with W of shape (fan_in, units) and b of shape (units,); arrays
hold one sample per row.
"""

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from model_core.activations import ACTIVATIONS, Activation
from model_core.errors import CorruptFileError, SpecError
from model_core.parallel import SERIAL, Split
from model_core.preprocessing import CHUNK_ROWS, as_features, standardize_into
from model_core.serialization import pack, unpack, weight_arrays, weights_from_arrays

MODEL_FORMAT = "backprop-model"
# Activations whose outputs are within [-1, 1] whatever their input.
BOUNDED_ACTIVATIONS = {"sigmoid", "tanh", "softmax"}
Weights = Sequence[tuple[np.ndarray, np.ndarray]]


def layer_shapes(n_features: int, layers: Sequence[dict]) -> list[tuple[int, int]]:
    """``(fan_in, units)`` of each layer's W: the first layer reads the features, every other
    layer the units of the one before. A layer has ``(fan_in + 1) * units`` parameters."""
    fan_ins = [n_features, *(layer["units"] for layer in layers[:-1])]
    return [(fan_in, layer["units"]) for fan_in, layer in zip(fan_ins, layers, strict=True)]


def activation_buffers(n_samples: int, weights: Weights, dtype) -> list[np.ndarray]:
    """One uninitialised (n_samples, units) array per layer."""
    return [np.empty((n_samples, w.shape[1]), dtype) for w, _ in weights]


def copy_weights(weights: Weights) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(w.copy(), b.copy()) for w, b in weights]


@dataclass(frozen=True)
class Dropout:
    """Inverted dropout's arrays for one batch, per layer (None for a layer without dropout):
    ``masks[i]`` (n_samples, units) holds 0 or 1 / (1 - p), and ``dropped[i]`` the activation
    times its mask, what the next layer reads. The activation itself stays in ``outputs[i]``,
    since the derivatives are written from it."""

    masks: list[np.ndarray | None]
    dropped: list[np.ndarray | None]

    def first_rows(self, n: int) -> "Dropout":
        """Views of the first n rows of every array."""
        return Dropout(
            [None if m is None else m[:n] for m in self.masks],
            [None if d is None else d[:n] for d in self.dropped],
        )

    def draw(self, rng: np.random.Generator, rates: Sequence[float]) -> None:
        """New masks: each unit kept with probability 1 - p, and then scaled by 1 / (1 - p)."""
        for mask, rate in zip(self.masks, rates, strict=True):
            if mask is not None:
                rng.random(dtype=mask.dtype, out=mask)
                np.greater_equal(mask, rate, out=mask)
                mask *= 1.0 / (1.0 - rate)


def dropout_buffers(n_samples: int, weights: Weights, rates: Sequence[float], dtype) -> Dropout:
    """Uninitialised masks and products for the layers whose rate is not 0."""
    masks, dropped = [], []
    for (w, _), rate in zip(weights, rates, strict=True):
        shape = (n_samples, w.shape[1])
        masks.append(np.empty(shape, dtype) if rate else None)
        dropped.append(np.empty(shape, dtype) if rate else None)
    return Dropout(masks, dropped)


def forward(
    x: np.ndarray,
    weights: Weights,
    activations: Sequence[Activation],
    outputs: Sequence[np.ndarray],
    dropout: Dropout | None = None,
    split: Split = SERIAL,
) -> np.ndarray:
    """Writes each layer's activation ``f(a @ W + b)`` into ``outputs``; returns the last.

    ``x`` is (n_samples, n_features); ``outputs[i]`` is (n_samples, units of layer i). With
    ``dropout`` (training only), a layer with a mask passes on its activation times the mask.
    ``split`` runs the passes after each product by rows over its threads (same bits).
    """
    a, threaded = x, split.splits(len(x))
    for i, ((w, b), activation, out) in enumerate(zip(weights, activations, outputs, strict=True)):
        # np.dot: for 2-D arrays the same BLAS call (same bits) as np.matmul, in half the
        # overhead per call (0.5 against 1 us), which counts at batch 1.
        np.dot(a, w, out=out)
        mask = dropped = None
        if dropout is not None and dropout.masks[i] is not None:
            mask, dropped = dropout.masks[i], dropout.dropped[i]
        if threaded:
            split.by_rows(_layer_rows(out, b, activation, mask, dropped), len(out))
        else:
            finish_layer(out, b, activation, mask, dropped)
        a = out if mask is None else dropped
    return a


def finish_layer(
    out: np.ndarray,
    b: np.ndarray,
    activation: Activation,
    mask: np.ndarray | None = None,
    dropped: np.ndarray | None = None,
) -> None:
    """A layer's passes after its product ``out`` (rows, units): the bias, the activation, and
    with a dropout ``mask`` the activation times it into ``dropped``."""
    out += b[np.newaxis]  # a (1, units) view: NumPy broadcasts it faster than b itself
    activation.forward(out)
    if mask is not None:
        np.multiply(out, mask, out=dropped)


def _layer_rows(out, b, activation, mask, dropped) -> Callable[[slice], None]:
    """:func:`finish_layer` on a slice of the rows."""

    def rows(part: slice) -> None:
        finish_layer(
            out[part],
            b,
            activation,
            None if mask is None else mask[part],
            None if dropped is None else dropped[part],
        )

    return rows


def chunk_rows(weights: Weights, dtype, max_bytes: int | None) -> int:
    """Rows per chunk of the forward pass: CHUNK_ROWS, fewer when one row's activations (the
    units of every layer) times CHUNK_ROWS would exceed ``max_bytes``; at least one."""
    if max_bytes is None:
        return CHUNK_ROWS
    row_bytes = sum(w.shape[1] for w, _ in weights) * np.dtype(dtype).itemsize
    return max(1, min(CHUNK_ROWS, max_bytes // row_bytes))


def forward_in_chunks(
    x: np.ndarray,
    weights: Weights,
    activations: Sequence[Activation],
    mean: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    max_bytes: int | None = None,
) -> Iterator[tuple[slice | np.ndarray, np.ndarray]]:
    """The forward pass a chunk of rows at a time, so that no temporary is dataset-sized and
    the activations of a chunk stay within ``max_bytes`` (see :func:`chunk_rows`).

    Yields ``(chunk, output)``: ``chunk`` picks rows of ``x`` (n_samples, n_features), a slice of
    them or, when ``rows`` (n,) is given, the next piece of ``rows``; ``output`` is the last
    layer's activation (rows in the chunk, units), overwritten by the next chunk: the buffers
    are allocated once. Standardises a copy: ``x`` is never modified.
    """
    n_rows = len(x) if rows is None else len(rows)
    step = chunk_rows(weights, x.dtype, max_bytes)
    buffers = activation_buffers(min(step, n_rows), weights, x.dtype)
    for start in range(0, n_rows, step):
        end = start + step
        chunk = slice(start, end) if rows is None else rows[start:end]
        x_chunk = x[chunk]  # indexing by rows gathers a copy; a slice is a view
        if mean is not None and rows is None:
            x_chunk = x_chunk.copy()
        standardize_into(x_chunk, mean, scale)
        outputs = [buffer[: len(x_chunk)] for buffer in buffers]
        yield chunk, forward(x_chunk, weights, activations, outputs)


def backward(
    x: np.ndarray,
    weights: Weights,
    activations: Sequence[Activation],
    outputs: Sequence[np.ndarray],
    deltas: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    l2: float = 0.0,
    scale: float = 1.0,
    dropout: Dropout | None = None,
    split: Split = SERIAL,
) -> None:
    """The chain rule, last layer first: gradients into ``grads``, errors into ``deltas``.

    ``x``, ``outputs`` and ``dropout`` are what :func:`forward` saw and wrote; ``deltas[i]`` has
    the shape of ``outputs[i]`` and the last one holds dL/dz of the output layer, already
    multiplied by ``scale``. ``grads`` is ``[grad_W0, grad_b0, grad_W1, ...]``, the shapes of the
    weights; each grad_W gets the l2 term ``scale * l2 * W`` too. ``split`` runs the
    derivatives by rows over its threads (same bits).
    """
    masks = dropout.masks if dropout is not None else [None] * len(weights)
    for i in range(len(weights) - 1, -1, -1):
        w, _ = weights[i]
        grad_w, grad_b = grads[2 * i], grads[2 * i + 1]
        if not i:
            a_prev = x
        elif masks[i - 1] is None:
            a_prev = outputs[i - 1]
        else:
            a_prev = dropout.dropped[i - 1]
        if len(x) == 1:
            # One sample: the outer product, twice as fast as a matmul over k = 1 (and equal to
            # it, one product per entry), and a bias gradient that is the error row itself.
            np.multiply(a_prev.T, deltas[i], out=grad_w)
            grad_b[...] = deltas[i][0]
        else:
            np.dot(a_prev.T, deltas[i], out=grad_w)
            np.add.reduce(deltas[i], axis=0, out=grad_b)  # np.sum, without its Python wrapper
        if l2:
            grad_w += (scale * l2) * w
        if i:
            backpropagate_error(i, weights, activations, outputs, deltas, masks[i - 1], split)


def backpropagate_error(
    i: int,
    weights: Weights,
    activations: Sequence[Activation],
    outputs: Sequence[np.ndarray],
    deltas: Sequence[np.ndarray],
    mask: np.ndarray | None = None,
    split: Split = SERIAL,
) -> None:
    """One step of the chain rule: ``deltas[i - 1]`` (dL/dz of layer i - 1) from ``deltas[i]``,
    through W of layer i, layer i - 1's dropout ``mask`` (training only) and the derivative of
    its activation (i >= 1). Training and the input gradients of model_core.explanations both go
    down the layers by it; ``split`` runs the derivative by rows over its threads."""
    delta, a, activation = deltas[i - 1], outputs[i - 1], activations[i - 1]
    np.dot(deltas[i], weights[i][0].T, out=delta)
    if split.splits(len(delta)):
        split.by_rows(_derivative_rows(delta, a, activation, mask), len(delta))
    else:
        apply_derivative(delta, a, activation, mask)


def apply_derivative(
    delta: np.ndarray, a: np.ndarray, activation: Activation, mask: np.ndarray | None = None
) -> None:
    """dL/da in ``delta`` to dL/dz: times the dropout ``mask``, then the activation's
    derivative at its output ``a``."""
    if mask is not None:
        delta *= mask
    activation.backward(delta, a)


def _derivative_rows(delta, a, activation, mask) -> Callable[[slice], None]:
    """:func:`apply_derivative` on a slice of the rows."""

    def rows(part: slice) -> None:
        apply_derivative(delta[part], a[part], activation, None if mask is None else mask[part])

    return rows


def l2_penalty(weights: Weights, l2: float) -> float:
    """l2 / 2 * sum of squared weights (biases are not penalised); :func:`backward` adds its
    gradient."""
    return 0.5 * l2 * sum(float(np.vdot(w, w)) for w, _ in weights) if l2 else 0.0


def class_indices(outputs: np.ndarray) -> np.ndarray:
    """The predicted class of each row: argmax, or a 0.5 threshold for a single output unit."""
    return write_class_indices(outputs, np.empty(len(outputs), np.intp))


def write_class_indices(outputs: np.ndarray, out: np.ndarray) -> np.ndarray:
    """:func:`class_indices` of outputs (n_samples, units) into ``out`` (n_samples,) intp."""
    if outputs.shape[1] == 1:
        return np.greater(outputs[:, 0], 0.5, out=out)
    return outputs.argmax(axis=1, out=out)


def count_correct(outputs: np.ndarray, labels: np.ndarray) -> int:
    """How many rows of outputs (n_samples, units) predict their class index in labels (n,)."""
    return int(np.count_nonzero(class_indices(outputs) == labels))


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

    @property
    def n_outputs(self) -> int:
        """Units of the output layer: classes (one for a single sigmoid), or target columns."""
        return self.weights[-1][0].shape[1]

    @functools.cached_property
    def input_bound(self) -> float:
        """The largest magnitude of a raw input for which the forward pass stays finite in the
        model's dtype: every row whose values are all within +-input_bound has finite outputs.

        Interval arithmetic, layer by layer: with every |x_i| <= M, each pre-activation is at
        most a*M + c (a, c from the absolute weights, biases and standardisation), kept under a
        quarter of the dtype's largest number (so that no partial sum of a product overflows
        either); sigmoid, tanh and softmax outputs are within 1 whatever comes in."""
        limit = float(np.finfo(self.dtype).max) / 4
        slope, offset = 1.0, 0.0
        if self.mean is not None:
            smallest_scale = float(np.min(self.scale))
            slope, offset = 1.0 / smallest_scale, float(np.max(np.abs(self.mean))) / smallest_scale
        bound = np.inf
        for (w, b), activation in zip(self.weights, self.activations, strict=True):
            norm = float(np.max(np.abs(w).sum(axis=0, dtype=np.float64)))
            slope, offset = norm * slope, norm * offset + float(np.max(np.abs(b)))
            if slope > 0:
                bound = min(bound, (limit - offset) / slope)
            if activation.name in BOUNDED_ACTIVATIONS:
                slope, offset = 0.0, 1.0
        return max(float(bound), 0.0) if np.isfinite(bound) else limit

    def forward(self, x, max_bytes: int | None = None) -> np.ndarray:
        """Output-layer activations (n_samples, units) for raw rows, computed in chunks whose
        activations stay within ``max_bytes`` (None: CHUNK_ROWS rows)."""
        x = as_features(x, self.dtype, "X", self.n_features)
        result = np.empty((len(x), self.weights[-1][0].shape[1]), dtype=self.dtype)
        for chunk, output in forward_in_chunks(
            x, self.weights, self.activations, self.mean, self.scale, max_bytes=max_bytes
        ):
            result[chunk] = output
        return result

    def predict_proba(self, x, max_bytes: int | None = None) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes``."""
        self._require_classification("predict_proba")
        return output_probabilities(self.forward(x, max_bytes), self.activations[-1].name)

    def predict(self, x, max_bytes: int | None = None) -> np.ndarray:
        """Labels (n_samples,) for classification; values (n_samples,) or (n, k) for regression."""
        return self._decode(self.forward(x, max_bytes))

    def predict_with_proba(self, x, max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``predict(x)`` and ``predict_proba(x)`` from one forward pass (classification)."""
        self._require_classification("predict_with_proba")
        outputs = self.forward(x, max_bytes)
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
