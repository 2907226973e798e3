"""Mini-batch backpropagation: the training loop, early stopping and checkpoints.

One epoch visits the training rows in a (shuffled) order of indices, never a shuffled copy of the
data. Each batch is gathered into a buffer allocated once, standardised there, pushed forward,
and its error pushed back by the chain rule into gradient buffers that are also allocated once;
the optimizer then updates the weights in place.
"""

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from model_core.activations import ACTIVATIONS
from model_core.errors import SpecError, TrainingDiverged
from model_core.initializers import INITIALIZERS
from model_core.losses import LOSSES
from model_core.network import Model, class_indices, forward, standardize_into
from model_core.optimizers import make_optimizer
from model_core.preprocessing import (
    CHUNK_ROWS,
    as_features,
    count_outputs,
    encode_targets,
    standardizer,
)
from model_core.serialization import pack, unpack, weight_arrays, weights_from_arrays
from model_core.specs import network_dtype, resolve_spec

CHECKPOINT_FORMAT = "backprop-checkpoint"
EpochCallback = Callable[[dict], object]


@dataclass
class TrainResult:
    model: Model
    history: list[dict]
    best_epoch: int
    stopped_early: bool = False
    stopped_by_callback: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class EarlyStopping:
    """Patience bookkeeping on the monitored loss (validation if there is any, else training)."""

    patience: int
    min_delta: float
    restore_best: bool
    best_loss: float = math.inf
    best_epoch: int = 0
    wait: int = 0

    def update(self, loss: float, epoch: int) -> bool:
        """Records one epoch's loss; True when it is the best so far."""
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.wait = loss, epoch, 0
            return True
        self.wait += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.wait >= self.patience


@dataclass(frozen=True)
class BatchBuffers:
    """Scratch arrays of one batch size: inputs, targets, each layer's activations and deltas."""

    x: np.ndarray
    targets: np.ndarray
    outputs: list[np.ndarray]
    deltas: list[np.ndarray]


@dataclass(frozen=True)
class EvaluationSet:
    """Rows to evaluate on: ``rows`` of ``x``, their encoded targets and class indices."""

    x: np.ndarray
    rows: np.ndarray
    targets: np.ndarray
    labels: np.ndarray | None


class Trainer:
    """Trains one network on one dataset; ``fit`` runs it, ``checkpoint`` saves its state.

    ``X`` is (n_samples, n_features); ``y`` holds class labels (n_samples,) for classification or
    values (n_samples,) / (n_samples, n_targets) for regression. ``validation_data`` is an optional
    ``(X_val, y_val)`` pair that replaces ``training.validation_split``. ``resume_from`` takes the
    bytes of :meth:`checkpoint` and continues that run exactly.
    """

    def __init__(
        self,
        X,
        y,
        network: dict,
        training: dict | None = None,
        task: str = "classification",
        validation_data=None,
        resume_from: bytes | None = None,
    ):
        self.dtype = np.dtype(network_dtype(network))
        self.x = as_features(X, self.dtype)
        spec = resolve_spec(
            network,
            training,
            task=task,
            n_features=self.x.shape[1],
            n_outputs=count_outputs(y, task),
            n_samples=len(self.x),
        )
        self.network, self.training, self.warnings = spec.network, spec.training, spec.warnings
        # Given weights only seed this run: the specs a model or checkpoint records stay small.
        self.given_weights = self.network["initial_weights"]
        self.network["initial_weights"] = None
        self.task = task
        saved = None if resume_from is None else unpack(CHECKPOINT_FORMAT, resume_from)
        if self.training["seed"] is None:
            self.training["seed"] = saved[0]["training"]["seed"] if saved else secrets.randbits(32)
        layers = self.network["layers"]
        self.targets = encode_targets(y, task, layers[-1]["units"], self.dtype, len(self.x))
        split_seed, init_seed, shuffle_seed = np.random.SeedSequence(self.training["seed"]).spawn(3)
        self.train_rows, self.validation = self._split_rows(
            np.random.default_rng(split_seed), validation_data
        )
        self.mean, self.scale = (
            standardizer(self.x, self.train_rows) if self.training["standardize"] else (None, None)
        )
        self.activations = [ACTIVATIONS[layer["activation"]] for layer in layers]
        self.loss = LOSSES[self.network["loss"]]
        self.weights = self._initial_weights(np.random.default_rng(init_seed))
        self.params = [p for pair in self.weights for p in pair]
        self.optimizer = make_optimizer(self.training["optimizer"], self.params)
        self.rng = np.random.default_rng(shuffle_seed)
        self.epoch = 0
        self.history: list[dict] = []
        self.early_stopping = self._early_stopping()
        self.best_weights: list | None = None
        self._allocate_buffers()
        if saved is not None:
            self._restore(*saved)

    # -- set-up -------------------------------------------------------------------------------

    def _split_rows(self, rng: np.random.Generator, validation_data):
        """Training row indices and the evaluation set (explicit data, a random split, or None)."""
        n_samples = len(self.x)
        if validation_data is not None:
            x_val, y_val = validation_data
            x_val = as_features(x_val, self.dtype, "validation_data.X", self.x.shape[1])
            targets = encode_targets(
                y_val,
                self.task,
                self.targets.matrix.shape[1],
                self.dtype,
                len(x_val),
                "validation_data.y",
                self.targets.classes,
            )
            return np.arange(n_samples), EvaluationSet(
                x_val, np.arange(len(x_val)), targets.matrix, targets.labels
            )
        split = self.training["validation_split"]
        if not split:
            return np.arange(n_samples), None
        n_val = int(round(n_samples * split))
        if n_val < 1 or n_val >= n_samples:
            raise SpecError(
                "training",
                "validation_split",
                f"{split} of {n_samples} rows leaves no validation or no training rows",
            )
        order = rng.permutation(n_samples)
        val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        return train_rows, EvaluationSet(self.x, val_rows, self.targets.matrix, self.targets.labels)

    def _initial_weights(self, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.given_weights is not None:
            return [
                (pair["W"].astype(self.dtype), pair["b"].astype(self.dtype))
                for pair in self.given_weights
            ]
        init = INITIALIZERS[self.network["init"]]
        weights, fan_in = [], self.x.shape[1]
        for layer in self.network["layers"]:
            units = layer["units"]
            weights.append((init(rng, fan_in, units, self.dtype), np.zeros(units, self.dtype)))
            fan_in = units
        return weights

    def _early_stopping(self) -> EarlyStopping | None:
        spec = self.training["early_stopping"]
        return None if spec is None else EarlyStopping(**spec)

    def _batch_size(self) -> int:
        size = self.training["batch_size"]
        n_train = len(self.train_rows)
        return n_train if size == "full" else min(size, n_train)

    def _allocate_buffers(self) -> None:
        """Every array the hot loop writes, allocated once at the largest batch size."""
        size, dtype = self._batch_size(), self.dtype
        full = BatchBuffers(
            np.empty((size, self.x.shape[1]), dtype),
            np.empty((size, self.targets.matrix.shape[1]), dtype),
            [np.empty((size, w.shape[1]), dtype) for w, _ in self.weights],
            [np.empty((size, w.shape[1]), dtype) for w, _ in self.weights],
        )
        self._views = {size: full}
        self.grads = [np.empty_like(p) for p in self.params]

    def _buffers(self, n: int) -> "BatchBuffers":
        """Views of the first n rows of every buffer; made once per batch size (at most two)."""
        views = self._views.get(n)
        if views is None:
            full = self._views[self._batch_size()]
            views = BatchBuffers(
                full.x[:n],
                full.targets[:n],
                [a[:n] for a in full.outputs],
                [d[:n] for d in full.deltas],
            )
            self._views[n] = views
        return views

    # -- the loop -----------------------------------------------------------------------------

    def fit(self, on_epoch: EpochCallback | None = None) -> TrainResult:
        """Trains up to ``training.epochs`` epochs; ``on_epoch(record)`` may return True to stop."""
        stopped_by_callback = False
        # Overflow is reported as TrainingDiverged, naming the epoch, not as numpy warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            while self.epoch < self.training["epochs"] and not self._patience_exhausted():
                record = self._run_epoch()
                if on_epoch is not None and on_epoch(record):
                    stopped_by_callback = True
                    break
        return self._result(stopped_by_callback)

    def _patience_exhausted(self) -> bool:
        return self.early_stopping is not None and self.early_stopping.exhausted

    def _run_epoch(self) -> dict:
        started = time.perf_counter()
        epoch = self.epoch + 1
        train_loss, train_accuracy = self._train_one_epoch(epoch)
        self._check_weights(epoch)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": None,
            "train_accuracy": train_accuracy,
            "val_accuracy": None,
        }
        if self.validation is not None:
            record["val_loss"], record["val_accuracy"] = self._evaluate(self.validation)
        self._track_best(record)
        record["seconds"] = time.perf_counter() - started
        self.history.append(record)
        self.epoch = epoch
        return record

    def _learning_rate(self, epoch: int) -> float:
        """Inverse-time decay: lr / (1 + decay * (epoch - 1))."""
        optimizer = self.training["optimizer"]
        return optimizer["learning_rate"] / (1.0 + optimizer["decay"] * (epoch - 1))

    def _train_one_epoch(self, epoch: int) -> tuple[float, float | None]:
        """One pass over the training rows; the mean batch loss (each measured just before its
        batch's update) and the accuracy of those same predictions."""
        rows = self.train_rows
        if self.training["shuffle"]:
            rows = rows[self.rng.permutation(len(rows))]
        lr = self._learning_rate(epoch)
        labels = self.targets.labels
        size = self._batch_size()
        loss_sum, correct = 0.0, 0
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            loss, output = self._step(batch, lr)
            if not math.isfinite(loss):
                raise TrainingDiverged(epoch, "the training loss")
            loss_sum += loss * len(batch)
            if labels is not None:
                correct += int(np.count_nonzero(class_indices(output) == labels[batch]))
        accuracy = None if labels is None else correct / len(rows)
        return loss_sum / len(rows), accuracy

    def _step(self, batch: np.ndarray, lr: float) -> tuple[float, np.ndarray]:
        """Forward, backward and update for one batch of row indices.

        Returns the batch's loss and output, both computed with the weights before the update.
        """
        loss, outputs = self.compute_gradients(batch, self.optimizer.gradient_scale(lr))
        self.optimizer.step(self.params, self.grads, lr)
        return loss, outputs[-1]

    def compute_gradients(
        self, batch: np.ndarray, scale: float = 1.0
    ) -> tuple[float, list[np.ndarray]]:
        """Loss and every layer's activations for the given training rows; their mean gradient,
        times ``scale``, into ``self.grads``.

        ``self.grads`` is ``[grad_W0, grad_b0, grad_W1, ...]``, the same shapes as the weights.
        The weights are left as they are (gradient checks call this directly).
        """
        n = len(batch)
        buffers = self._buffers(n)
        x, targets, outputs, deltas = buffers.x, buffers.targets, buffers.outputs, buffers.deltas
        np.take(self.x, batch, axis=0, out=x, mode="clip")
        standardize_into(x, self.mean, self.scale)
        np.take(self.targets.matrix, batch, axis=0, out=targets, mode="clip")
        output = forward(x, self.weights, self.activations, outputs)
        loss = self.loss.value(output, targets) + self._l2_penalty()
        self.loss.delta(output, targets, deltas[-1], self.activations[-1])
        deltas[-1] *= scale / n
        self._backward(x, outputs, deltas, scale)
        return loss, outputs

    def _l2_penalty(self) -> float:
        """l2 / 2 * sum of squared weights (biases are not penalised)."""
        l2 = self.training["l2"]
        return 0.5 * l2 * sum(float(np.vdot(w, w)) for w, _ in self.weights) if l2 else 0.0

    def _backward(self, x: np.ndarray, outputs: list, deltas: list, scale: float) -> None:
        """The chain rule, last layer first: gradients into ``self.grads``, errors into deltas."""
        for i in range(len(self.weights) - 1, -1, -1):
            w, _ = self.weights[i]
            grad_w, grad_b = self.grads[2 * i], self.grads[2 * i + 1]
            a_prev = outputs[i - 1] if i else x
            np.matmul(a_prev.T, deltas[i], out=grad_w)
            np.sum(deltas[i], axis=0, out=grad_b)
            if self.training["l2"]:
                grad_w += (scale * self.training["l2"]) * w
            if i:
                np.matmul(deltas[i], w.T, out=deltas[i - 1])
                self.activations[i - 1].backward(deltas[i - 1], outputs[i - 1])

    def _check_weights(self, epoch: int) -> None:
        for i, (w, b) in enumerate(self.weights):
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise TrainingDiverged(epoch, f"a weight of layer {i}")

    def _evaluate(self, data: EvaluationSet) -> tuple[float, float | None]:
        """Mean loss and accuracy on evaluation rows, chunk by chunk, with the current weights."""
        loss_sum, correct = 0.0, 0
        for start in range(0, len(data.rows), CHUNK_ROWS):
            rows = data.rows[start : start + CHUNK_ROWS]
            x = data.x[rows]
            standardize_into(x, self.mean, self.scale)
            outputs = [np.empty((len(rows), w.shape[1]), self.dtype) for w, _ in self.weights]
            out = forward(x, self.weights, self.activations, outputs)
            loss_sum += self.loss.value(out, data.targets[rows]) * len(rows)
            if data.labels is not None:
                correct += int(np.count_nonzero(class_indices(out) == data.labels[rows]))
        accuracy = None if data.labels is None else correct / len(data.rows)
        return loss_sum / len(data.rows), accuracy

    def _track_best(self, record: dict) -> None:
        if self.early_stopping is None:
            return
        monitored = record["val_loss"] if record["val_loss"] is not None else record["train_loss"]
        improved = self.early_stopping.update(monitored, record["epoch"])
        if improved and self.early_stopping.restore_best:
            self.best_weights = [(w.copy(), b.copy()) for w, b in self.weights]

    def _result(self, stopped_by_callback: bool) -> TrainResult:
        weights = [(w.copy(), b.copy()) for w, b in self.weights]
        best_epoch = self.epoch
        if self.early_stopping is not None and self.early_stopping.best_epoch:
            best_epoch = self.early_stopping.best_epoch
            if self.best_weights is not None:
                weights = [(w.copy(), b.copy()) for w, b in self.best_weights]
        model = Model(
            self.network,
            weights,
            self.task,
            self.targets.classes,
            self.mean,
            self.scale,
            self.targets.ndim,
            self.training,
        )
        stopped_early = self._patience_exhausted() and self.epoch < self.training["epochs"]
        return TrainResult(
            model,
            list(self.history),
            best_epoch,
            stopped_early,
            stopped_by_callback,
            list(self.warnings),
        )

    # -- checkpoints --------------------------------------------------------------------------

    def checkpoint(self) -> bytes:
        """The full training state after the last finished epoch, as ``.npz`` bytes."""
        header = {
            "network": self.network,
            "training": self.training,
            "epoch": self.epoch,
            "history": self.history,
            "rng": self.rng.bit_generator.state,
            "early_stopping": None
            if self.early_stopping is None
            else {
                "best_loss": self.early_stopping.best_loss,
                "best_epoch": self.early_stopping.best_epoch,
                "wait": self.early_stopping.wait,
            },
        }
        arrays = weight_arrays(self.weights)
        arrays.update({f"optimizer.{k}": v for k, v in self.optimizer.state().items()})
        if self.best_weights is not None:
            arrays.update({f"best.{k}": v for k, v in weight_arrays(self.best_weights).items()})
        return pack(CHECKPOINT_FORMAT, header, arrays)

    def _restore(self, header: dict, arrays: dict[str, np.ndarray]) -> None:
        """Puts back the state :meth:`checkpoint` saved; the specs must match (epochs may grow)."""
        for section in ("network", "training"):
            saved, current = dict(header.get(section) or {}), dict(getattr(self, section))
            saved.pop("epochs", None)
            current.pop("epochs", None)
            if saved != current:
                raise SpecError(
                    "training",
                    "resume_from",
                    f"the checkpoint was made with a different {section} spec",
                )
        for (w, b), (saved_w, saved_b) in zip(
            self.weights, weights_from_arrays(arrays, len(self.weights)), strict=True
        ):
            w[...], b[...] = saved_w, saved_b
        prefix = "optimizer."
        self.optimizer.load_state(
            {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        )
        self.rng.bit_generator.state = header["rng"]
        self.epoch = header["epoch"]
        self.history = header["history"]
        if self.early_stopping is not None:
            for key, value in header["early_stopping"].items():
                setattr(self.early_stopping, key, value)
            if "best.W0" in arrays:
                self.best_weights = weights_from_arrays(arrays, len(self.weights), "best.")


def train(
    X,
    y,
    network: dict,
    training: dict | None = None,
    task: str = "classification",
    on_epoch: EpochCallback | None = None,
    resume_from: bytes | None = None,
    validation_data=None,
) -> TrainResult:
    """Trains a feedforward network by backpropagation; see :class:`Trainer` for the arguments."""
    trainer = Trainer(X, y, network, training, task, validation_data, resume_from)
    return trainer.fit(on_epoch)
