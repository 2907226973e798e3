"""Mini-batch backpropagation: the training loop.

One epoch visits the training rows in a (shuffled) order of indices, never a shuffled copy of the
data. Each batch is gathered into a buffer allocated once, standardised there, pushed forward,
and its error pushed back by the chain rule into gradient buffers that are also allocated once;
the optimizer then updates the weights in place.

The set-up comes from the modules around it: splits (which rows train and which evaluate),
preprocessing (targets, standardisation), initializers, optimizers, early_stopping, network
(forward and backward) and checkpoints.
"""

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from model_core.activations import ACTIVATIONS
from model_core.buffers import flat_buffer
from model_core.checkpoints import read_checkpoint, restore_checkpoint, save_checkpoint
from model_core.early_stopping import EarlyStopping, monitored_loss
from model_core.errors import TrainingDiverged
from model_core.fine_tuning import (
    Parent,
    check_fine_tunable,
    model_standardization,
    starting_weights,
)
from model_core.initializers import initial_weights
from model_core.losses import LOSSES
from model_core.network import (
    Dropout,
    Model,
    activation_buffers,
    backward,
    copy_weights,
    count_correct,
    dropout_buffers,
    forward,
    forward_in_chunks,
    l2_penalty,
    layer_shapes,
    write_class_indices,
)
from model_core.optimizers import make_optimizer
from model_core.parallel import DEFAULT_THREADS, SERIAL, Split
from model_core.preprocessing import (
    as_features,
    count_outputs,
    encode_targets,
    standardize_into,
    standardizer,
)
from model_core.specs import network_dtype, resolve_spec
from model_core.splits import EvaluationSet, run_seeds, split_rows
from model_core.weighting import check_rows_weigh, class_weight_vector, row_weights

EpochCallback = Callable[[dict], object]


@dataclass
class TrainResult:
    model: Model
    history: list[dict]
    best_epoch: int
    stopped_early: bool = False
    stopped_by_callback: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchBuffers:
    """Scratch arrays of one batch size: inputs, targets, each layer's activations and deltas,
    and the dropout masks (None without dropout)."""

    x: np.ndarray
    targets: np.ndarray
    outputs: list[np.ndarray]
    deltas: list[np.ndarray]
    dropout: Dropout | None


class Trainer:
    """Trains one network on one dataset; ``fit`` runs it, ``checkpoint`` saves its state.

    ``X`` is (n_samples, n_features); ``y`` holds class labels (n_samples,) for classification or
    values (n_samples,) / (n_samples, n_targets) for regression. ``validation_data`` is an optional
    ``(X_val, y_val)`` pair (or ``(X_val, y_val, sample_weight_val)``) that replaces
    ``training.validation_split``. ``resume_from`` takes the bytes of :meth:`checkpoint` and
    continues that run exactly. ``sample_weight`` (n_samples,) weighs each row's loss
    (model_core/weighting.py). ``init_from`` is a trained :class:`Model` to start from: its
    weights (but a fresh output layer with ``replace_output``) and its standardisation.
    ``threads`` (default 1) is how many threads the elementwise passes and the optimizer's
    update may use between the matrix products (model_core/parallel.py): batches of at least
    ``parallel.MIN_ROWS`` rows split them, bit for bit the result of one thread; BLAS keeps its
    own threads for the products. :meth:`fit` stops the helper threads when it returns.
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
        sample_weight=None,
        init_from: Model | None = None,
        replace_output: bool = False,
        threads: int = DEFAULT_THREADS,
    ):
        self.dtype = np.dtype(network_dtype(network))
        self.x = as_features(X, self.dtype)
        self.task = task
        given_weights = self._resolve_specs(network, training, y, init_from is not None)
        saved = None if resume_from is None else read_checkpoint(resume_from)
        self._choose_seed(saved)
        layers = self.network["layers"]
        self.targets = encode_targets(y, task, layers[-1]["units"], self.dtype, len(self.x))
        if init_from is not None:
            check_fine_tunable(
                Parent.of(init_from),
                self.network,
                self.training,
                task,
                self.targets.classes,
                self.x.shape[1],
                replace_output,
            )
        self._weigh_rows(sample_weight)
        split_seed, init_seed, shuffle_seed, dropout_seed = run_seeds(self.training["seed"])
        self._split_and_standardize(np.random.default_rng(split_seed), validation_data, init_from)
        self.activations = [ACTIVATIONS[layer["activation"]] for layer in layers]
        self.loss = LOSSES[self.network["loss"]]
        start = init_from and (init_from, replace_output)
        self._set_up_weights(np.random.default_rng(init_seed), given_weights, start)
        self.rng = np.random.default_rng(shuffle_seed)
        self.dropout_rates = [layer["dropout"] for layer in layers]
        self.dropout_rng = np.random.default_rng(dropout_seed)
        self.epoch = 0
        self.history: list[dict] = []
        self.early_stopping = EarlyStopping.from_spec(self.training["early_stopping"])
        self._allocate_buffers()
        split = Split(threads)
        self.split = split if split.splits(self._batch_size()) else SERIAL
        if saved is not None:
            restore_checkpoint(self, *saved)

    # -- set-up -------------------------------------------------------------------------------

    def _resolve_specs(
        self, network: dict, training: dict | None, y, starts_trained: bool
    ) -> list[dict] | None:
        """Check both specs against the data and fill in their defaults; returns the given
        initial weights, which only seed this run: the specs a model or checkpoint records
        stay small."""
        spec = resolve_spec(
            network,
            training,
            task=self.task,
            n_features=self.x.shape[1],
            n_outputs=count_outputs(y, self.task),
            n_samples=len(self.x),
            starts_trained=starts_trained,
        )
        self.network, self.training, self.warnings = spec.network, spec.training, spec.warnings
        given_weights = self.network["initial_weights"]
        self.network["initial_weights"] = None
        return given_weights

    def _choose_seed(self, saved: tuple[dict, dict] | None) -> None:
        """A run without a seed takes its checkpoint's, else a fresh one, recorded in the spec."""
        if self.training["seed"] is None:
            self.training["seed"] = saved[0]["training"]["seed"] if saved else secrets.randbits(32)

    def _weigh_rows(self, sample_weight) -> None:
        """Each row's weight in the loss, or None (unweighted) without sample or class weights."""
        labels = self.targets.labels
        self.per_class = class_weight_vector(
            self.training["class_weight"], self.targets.classes, labels
        )
        self.row_weights = row_weights(
            sample_weight, self.per_class, labels, len(self.x), self.dtype
        )

    def _split_and_standardize(
        self, rng: np.random.Generator, validation_data, init_from: Model | None
    ) -> None:
        """Which rows train and which evaluate, and the standardisation: the training rows'
        (unweighted) mean and scale, or the model's that training starts from."""
        self.train_rows, self.validation = split_rows(
            rng,
            self.x,
            self.targets,
            self.task,
            self.training["validation_split"],
            validation_data,
            self.row_weights,
            self.per_class,
        )
        check_rows_weigh(self.row_weights, self.train_rows, "training")
        if self.validation is not None:
            check_rows_weigh(self.validation.weights, self.validation.rows, "validation")
        if init_from is not None:
            self.mean, self.scale = model_standardization(init_from, self.dtype)
        elif self.training["standardize"]:
            self.mean, self.scale = standardizer(self.x, self.train_rows)
        else:
            self.mean, self.scale = None, None

    def _set_up_weights(
        self,
        rng: np.random.Generator,
        given: list[dict] | None,
        start: tuple[Model, bool] | None = None,
    ) -> None:
        """Weights and biases as views of one flat buffer, and the optimizer that updates it;
        ``start`` is the model to start from and whether its output layer is replaced."""
        initial = self._initial_weights(rng, given)
        if start is not None:
            initial = starting_weights(start[0], initial, self.dtype, start[1])
        shapes = [p.shape for pair in initial for p in pair]
        self.flat_params, self.params = flat_buffer(shapes, self.dtype)
        for param, value in zip(self.params, (p for pair in initial for p in pair), strict=True):
            param[...] = value
        self.weights = list(zip(self.params[::2], self.params[1::2], strict=True))
        self.optimizer = make_optimizer(self.training, self.params)

    def _initial_weights(
        self, rng: np.random.Generator, given: list[dict] | None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The resolved ``network.initial_weights`` in the network's dtype, else fresh ones."""
        if given is not None:
            return [(pair["W"].astype(self.dtype), pair["b"].astype(self.dtype)) for pair in given]
        shapes = layer_shapes(self.x.shape[1], self.network["layers"])
        return initial_weights(self.network["init"], rng, shapes, self.dtype)

    def _batch_size(self) -> int:
        size = self.training["batch_size"]
        n_train = len(self.train_rows)
        return n_train if size == "full" else min(size, n_train)

    def _allocate_buffers(self) -> None:
        """Every array the hot loop writes, allocated once at the largest batch size."""
        size, dtype = self._batch_size(), self.dtype
        rates = self.dropout_rates
        full = BatchBuffers(
            np.empty((size, self.x.shape[1]), dtype),
            np.empty((size, self.targets.matrix.shape[1]), dtype),
            activation_buffers(size, self.weights, dtype),
            activation_buffers(size, self.weights, dtype),
            dropout_buffers(size, self.weights, rates, dtype) if any(rates) else None,
        )
        self._views = {size: full}
        self.flat_grads, self.grads = flat_buffer([p.shape for p in self.params], dtype)

    def batch_buffers(self, n: int) -> "BatchBuffers":
        """Views of the first n rows of every buffer; made once per batch size (at most two).
        After :meth:`compute_gradients`, its ``dropout.masks`` are the masks that batch used."""
        views = self._views.get(n)
        if views is None:
            full = self._views[self._batch_size()]
            views = BatchBuffers(
                full.x[:n],
                full.targets[:n],
                [a[:n] for a in full.outputs],
                [d[:n] for d in full.deltas],
                None if full.dropout is None else full.dropout.first_rows(n),
            )
            self._views[n] = views
        return views

    def checkpoint(self) -> bytes:
        """The full training state after the last finished epoch, as ``.npz`` bytes."""
        return save_checkpoint(self)

    # -- the loop -----------------------------------------------------------------------------

    def fit(self, on_epoch: EpochCallback | None = None) -> TrainResult:
        """Trains up to ``training.epochs`` epochs; ``on_epoch(record)`` may return True to stop."""
        stopped_by_callback = False
        # Overflow is reported as TrainingDiverged, naming the epoch, not as numpy warnings.
        with self.split, np.errstate(over="ignore", invalid="ignore"):
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
        learning_rate = self.optimizer.start_epoch(epoch)
        train_loss, train_accuracy = self._train_one_epoch(epoch)
        self._check_weights(epoch)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": None,
            "train_accuracy": train_accuracy,
            "val_accuracy": None,
            "learning_rate": learning_rate,
        }
        if self.validation is not None:
            record["val_loss"], record["val_accuracy"] = self._evaluate(self.validation)
        self.optimizer.end_epoch(epoch, monitored_loss(record))
        self._track_best(record)
        record["seconds"] = time.perf_counter() - started
        self.history.append(record)
        self.epoch = epoch
        return record

    def _train_one_epoch(self, epoch: int) -> tuple[float, float | None]:
        """One pass over the training rows at the optimizer's rate; the mean batch loss (each
        measured just before its batch's update) and the accuracy of those same predictions.

        Per batch only what must be: forward, backward, update, the loss; the predicted classes
        are written into one array and compared with the labels once per epoch.
        """
        rows = self.train_rows
        if self.training["shuffle"]:
            rows = rows[self.rng.permutation(len(rows))]
        scale = self.optimizer.gradient_scale()
        step, params, grads = self.optimizer.step, self.flat_params, self.flat_grads
        split = self.split
        labels = self.targets.labels
        predicted = None if labels is None else np.empty(len(rows), np.intp)
        size = self._batch_size()
        loss_sum = 0.0
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            loss, outputs = self.compute_gradients(batch, scale)
            step(params, grads, split)
            if not math.isfinite(loss):
                raise TrainingDiverged(epoch, "the training loss")
            loss_sum += loss * self._batch_weight(batch)
            if predicted is not None:
                write_class_indices(outputs[-1], predicted[start : start + size])
        total = self._batch_weight(rows)
        if predicted is None:
            return loss_sum / total, None
        return loss_sum / total, np.count_nonzero(predicted == labels[rows]) / len(rows)

    def _batch_weight(self, batch: np.ndarray) -> float:
        """What a batch's mean loss counts for in the epoch's: its rows, or their weights."""
        if self.row_weights is None:
            return len(batch)
        return float(self.row_weights[batch].sum())

    def compute_gradients(
        self, batch: np.ndarray, scale: float = 1.0, draw_masks: bool = True
    ) -> tuple[float, list[np.ndarray]]:
        """Loss and every layer's activations for the given training rows; their mean gradient
        (weighted by the rows' weights, when there are any), times ``scale``, into
        ``self.grads``.

        ``self.grads`` is ``[grad_W0, grad_b0, grad_W1, ...]``, the same shapes as the weights.
        The weights are left as they are (gradient checks call this directly, with
        ``draw_masks=False`` to keep the dropout masks of the call before).
        """
        n = len(batch)
        buffers = self.batch_buffers(n)
        x, targets, outputs, deltas = buffers.x, buffers.targets, buffers.outputs, buffers.deltas
        dropout = buffers.dropout
        if dropout is not None and draw_masks:
            dropout.draw(self.dropout_rng, self.dropout_rates)
        self.gather_batch(batch, x, targets)
        output = forward(x, self.weights, self.activations, outputs, dropout, self.split)
        l2 = self.training["l2"]
        loss = self.loss.value_and_delta(output, targets, deltas[-1], self.activations[-1])
        if self.row_weights is None:
            deltas[-1] *= scale / n
        else:
            loss = self._weigh_batch(batch, output, targets, deltas[-1], scale)
        loss += l2_penalty(self.weights, l2)
        backward(
            x,
            self.weights,
            self.activations,
            outputs,
            deltas,
            self.grads,
            l2,
            scale,
            dropout,
            self.split,
        )
        return loss, outputs

    def gather_batch(self, batch: np.ndarray, x: np.ndarray, targets: np.ndarray) -> None:
        """:meth:`gather`, by rows over the split's threads when the batch is big enough."""
        n = len(batch)
        if self.split.splits(n):
            self.split.by_rows(lambda part: self.gather(batch[part], x[part], targets[part]), n)
        else:
            self.gather(batch, x, targets)

    def gather(self, batch: np.ndarray, x: np.ndarray, targets: np.ndarray) -> None:
        """The rows ``batch`` (n,) of the data into ``x`` (n, features), standardised, and of
        the targets into ``targets``."""
        self.x.take(batch, axis=0, out=x, mode="clip")
        standardize_into(x, self.mean, self.scale)
        self.targets.matrix.take(batch, axis=0, out=targets, mode="clip")

    def _weigh_batch(
        self,
        batch: np.ndarray,
        output: np.ndarray,
        targets: np.ndarray,
        delta: np.ndarray,
        scale: float,
    ) -> float:
        """The batch's weighted mean loss sum(w_i l_i) / sum(w_i); each row's output error
        (per sample, in ``delta``) times w_i * scale / sum(w_i). A batch whose weights are all 0
        counts for nothing: loss and gradient 0."""
        weights = self.row_weights[batch]
        total = float(weights.sum())
        factor = scale / total if total > 0 else 0.0
        delta *= (weights * factor)[:, np.newaxis]
        if total == 0:
            return 0.0
        return float(np.dot(weights, self.loss.per_sample(output, targets))) / total

    def _check_weights(self, epoch: int) -> None:
        for i, (w, b) in enumerate(self.weights):
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise TrainingDiverged(epoch, f"a weight of layer {i}")

    def _evaluate(self, data: EvaluationSet) -> tuple[float, float | None]:
        """Mean loss and accuracy on evaluation rows, chunk by chunk, with the current weights."""
        loss_sum, correct = 0.0, 0
        for rows, output in forward_in_chunks(
            data.x, self.weights, self.activations, self.mean, self.scale, data.rows
        ):
            if data.weights is None:
                loss_sum += self.loss.value(output, data.targets[rows]) * len(rows)
            else:
                per_sample = self.loss.per_sample(output, data.targets[rows])
                loss_sum += float(np.dot(data.weights[rows], per_sample))
            if data.labels is not None:
                correct += count_correct(output, data.labels[rows])
        accuracy = None if data.labels is None else correct / len(data.rows)
        total = len(data.rows) if data.weights is None else float(data.weights[data.rows].sum())
        return loss_sum / total, accuracy

    def _track_best(self, record: dict) -> None:
        if self.early_stopping is not None:
            self.early_stopping.update(record, self.weights)

    def _result(self, stopped_by_callback: bool) -> TrainResult:
        weights, best_epoch = self.weights, self.epoch
        stopping = self.early_stopping
        if stopping is not None and stopping.best_epoch:
            best_epoch = stopping.best_epoch
            if stopping.best_weights is not None:
                weights = stopping.best_weights
        model = Model(
            self.network,
            copy_weights(weights),
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


def train(
    X,
    y,
    network: dict,
    training: dict | None = None,
    task: str = "classification",
    on_epoch: EpochCallback | None = None,
    resume_from: bytes | None = None,
    validation_data=None,
    sample_weight=None,
    init_from: Model | None = None,
    replace_output: bool = False,
    threads: int = DEFAULT_THREADS,
) -> TrainResult:
    """Trains a feedforward network by backpropagation; see :class:`Trainer` for the arguments."""
    trainer = Trainer(
        X,
        y,
        network,
        training,
        task,
        validation_data,
        resume_from,
        sample_weight,
        init_from,
        replace_output,
        threads,
    )
    return trainer.fit(on_epoch)
