"""How well a trained model predicts rows whose answers are known: the figures of
``POST /v1/models/{ref}/evaluate``. NumPy and model_core only (no Flask, no database).

The loss is the model's own, as model_core measures ``val_loss`` during training: the loss
function's ``value`` on the output layer against the encoded targets, without the l2 term (a
penalty on the weights says nothing about these rows). The other figures follow
``sklearn.metrics`` on the same predictions, edge cases included, so that the two can be checked
against each other (``tests/service/serving/test_evaluation.py`` does).

Rows with weights (a data set's ``w``) get the weighted figures too, ``weighted``: the loss as
training weighs it, sum(w_i l_i) / sum(w_i), and scikit-learn's ``sample_weight`` accuracy, or
MSE and MAE; the other figures stay unweighted counts.

Data problems raise model_core's ``SpecError`` with section ``"data"`` and field ``"X"`` (the
rows) or ``"y"`` (the targets); the caller names the request field the user should fix.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from model_core import Model, SpecError
from model_core.losses import LOSSES
from model_core.network import class_indices
from model_core.preprocessing import Targets, encode_targets


@dataclass(frozen=True)
class ClassMetrics:
    """One class: ``precision`` of the rows predicted as it, ``recall`` of the rows that are it,
    and ``support``, how many rows are it."""

    label: object
    precision: float
    recall: float
    support: int


@dataclass(frozen=True)
class ConfusionMatrix:
    """``counts[i][j]``: rows of true class ``labels[i]`` predicted as ``labels[j]``; ``labels``
    are the model's classes in the order of its output units."""

    labels: list
    counts: list[list[int]]


@dataclass(frozen=True)
class SparseConfusionMatrix:
    """The confusion matrix of a model with more classes than a dense one is worth (K x K
    counts, nearly all zero, took 26 s and 18 MB to answer at K = 3,000): ``entries`` are
    ``[i, j, count]`` for the pairs that occur, ``count`` rows of true class ``labels[i]``
    predicted as ``labels[j]``, sorted by ``i`` then ``j``; at most one per row evaluated."""

    labels: list
    entries: list[list[int]]


@dataclass(frozen=True)
class WeightedFigures:
    """The figures of rows with weights w: the loss sum(w_i l_i) / sum(w_i), and the accuracy
    (classification) or MSE and MAE averaged over the outputs (regression), each weighted as
    scikit-learn's ``sample_weight`` weighs them."""

    loss: float
    accuracy: float | None = None
    mse: float | None = None
    mae: float | None = None


@dataclass(frozen=True)
class ClassificationReport:
    task: str
    n_samples: int
    loss_function: str
    loss: float
    accuracy: float
    per_class: list[ClassMetrics]
    confusion_matrix: ConfusionMatrix | SparseConfusionMatrix
    weighted: WeightedFigures | None = None


@dataclass(frozen=True)
class OutputMetrics:
    """One regression output (target column ``output``, 0-based)."""

    output: int
    mse: float
    mae: float
    r2: float | None


@dataclass(frozen=True)
class RegressionReport:
    """``mse``, ``mae`` and ``r2`` are the unweighted means of the per-output figures
    (scikit-learn's ``multioutput="uniform_average"``)."""

    task: str
    n_samples: int
    loss_function: str
    loss: float
    mse: float
    mae: float
    r2: float | None
    per_output: list[OutputMetrics]
    weighted: WeightedFigures | None = None


Report = ClassificationReport | RegressionReport


# Classes up to which the confusion matrix is dense; the API passes MAX_CONFUSION_CLASSES.
MAX_DENSE_CLASSES = 100


def evaluate(
    model: Model,
    x,
    y,
    max_dense_classes: int = MAX_DENSE_CLASSES,
    max_bytes: int | None = None,
    sample_weight: np.ndarray | None = None,
) -> Report:
    """The model's figures on rows ``x`` (n_samples, n_features) whose targets are ``y``: class
    labels (n_samples,) among ``model.classes``, or values (n_samples,) / (n_samples, n_outputs).
    A classifier of more than ``max_dense_classes`` classes gets a sparse confusion matrix; the
    forward pass works in chunks whose activations stay within ``max_bytes``. Rows with weights
    ``sample_weight`` (n_samples,) get the ``weighted`` figures too.

    Raises SpecError (field ``X`` or ``y``) when the rows or targets do not fit the model.
    """
    outputs = model.forward(x, max_bytes)
    targets = encoded_targets(model, y, outputs)
    loss = LOSSES[model.network["loss"]].value(outputs, targets.matrix)
    report = REPORTS[model.task](model, outputs, targets, y, loss, max_dense_classes)
    if sample_weight is None:
        return report
    return replace(report, weighted=weighted_figures(model, outputs, targets, y, sample_weight))


def weighted_figures(
    model: Model, outputs: np.ndarray, targets: Targets, y, w: np.ndarray
) -> WeightedFigures:
    """The figures of :class:`WeightedFigures`, in float64."""
    w = np.asarray(w, dtype=np.float64)
    total = w.sum()
    per_sample = LOSSES[model.network["loss"]].per_sample(outputs, targets.matrix)
    loss = float(np.dot(w, per_sample.astype(np.float64)) / total)
    if model.task == "classification":
        correct = class_indices(outputs) == targets.labels
        return WeightedFigures(loss, accuracy=float(np.dot(w, correct) / total))
    errors = outputs.astype(np.float64) - float_targets(y, len(outputs))
    mse = np.average(errors**2, axis=0, weights=w).mean()
    mae = np.average(np.abs(errors), axis=0, weights=w).mean()
    return WeightedFigures(loss, mse=float(mse), mae=float(mae))


def float_targets(y, n_samples: int) -> np.ndarray:
    """Regression targets as float64 (n_samples, n_outputs), from the raw ``y``."""
    return np.asarray(y, dtype=np.float64).reshape(n_samples, -1)


def encoded_targets(model: Model, y, outputs: np.ndarray) -> Targets:
    """``y`` encoded as the model's loss sees it (``targets.matrix`` has the shape of
    ``outputs``); labels outside the model's classes, or a number of target columns other than
    the model's outputs, raise SpecError."""
    n_samples, units = outputs.shape
    targets = encode_targets(y, model.task, units, model.dtype, n_samples, "y", model.classes)
    if targets.matrix.shape[1] != units:
        columns = targets.matrix.shape[1]
        raise SpecError("data", "y", f"has {columns} target columns; the model predicts {units}")
    return targets


def classification_report(
    model: Model,
    outputs: np.ndarray,
    targets: Targets,
    _y,
    loss: float,
    max_dense_classes: int,
) -> ClassificationReport:
    """Accuracy, per-class precision and recall, and the confusion matrix, in time and memory
    linear in the rows and the classes (the matrix is sparse above ``max_dense_classes``).

    A class never predicted has precision 0, and one absent from ``y`` recall 0 (scikit-learn's
    ``zero_division=0``); every class of the model is listed, present in ``y`` or not.
    """
    n_classes = len(model.classes)
    true, predicted = targets.labels, class_indices(outputs)
    support = np.bincount(true, minlength=n_classes)
    correct = np.bincount(true[true == predicted], minlength=n_classes)
    precision = ratio_or_zero(correct, np.bincount(predicted, minlength=n_classes))
    recall = ratio_or_zero(correct, support)
    per_class = [
        ClassMetrics(label, float(p), float(r), int(s))
        for label, p, r, s in zip(model.classes, precision, recall, support, strict=True)
    ]
    return ClassificationReport(
        task=model.task,
        n_samples=len(outputs),
        loss_function=model.network["loss"],
        loss=loss,
        accuracy=float(correct.sum() / len(outputs)),
        per_class=per_class,
        confusion_matrix=confusion_matrix(model.classes, true, predicted, max_dense_classes),
    )


def confusion_matrix(
    classes: list, true: np.ndarray, predicted: np.ndarray, max_dense_classes: int
) -> ConfusionMatrix | SparseConfusionMatrix:
    """Dense up to ``max_dense_classes`` classes, sparse above."""
    n_classes = len(classes)
    if n_classes <= max_dense_classes:
        return ConfusionMatrix(list(classes), confusion_counts(true, predicted, n_classes).tolist())
    pairs, counts = np.unique(true.astype(np.int64) * n_classes + predicted, return_counts=True)
    entries = np.column_stack([pairs // n_classes, pairs % n_classes, counts])
    return SparseConfusionMatrix(list(classes), entries.tolist())


def confusion_counts(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64: rows the true class index, columns the predicted one."""
    flat = np.bincount(true * n_classes + predicted, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def ratio_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator as float64, 0 where the denominator is 0."""
    return np.divide(
        numerator,
        denominator,
        out=np.zeros(len(numerator)),
        where=denominator > 0,
    )


def regression_report(
    model: Model, outputs: np.ndarray, targets: Targets, y, loss: float, _max_dense_classes: int
) -> RegressionReport:
    """MSE, MAE and R^2 per output and averaged over the outputs, in float64 from the raw
    ``y`` (not its copy in the model's dtype), so float32 models lose nothing here."""
    y_true = float_targets(y, len(outputs))
    y_pred = outputs.astype(np.float64)
    errors = y_pred - y_true
    mse = np.mean(errors**2, axis=0)
    mae = np.mean(np.abs(errors), axis=0)
    r2 = r2_scores(y_true, errors)
    per_output = [
        OutputMetrics(i, float(mse[i]), float(mae[i]), None if r2 is None else float(r2[i]))
        for i in range(y_true.shape[1])
    ]
    return RegressionReport(
        task=model.task,
        n_samples=len(outputs),
        loss_function=model.network["loss"],
        loss=loss,
        mse=float(mse.mean()),
        mae=float(mae.mean()),
        r2=None if r2 is None else float(r2.mean()),
        per_output=per_output,
    )


def r2_scores(y_true: np.ndarray, errors: np.ndarray) -> np.ndarray | None:
    """R^2 = 1 - SS_res / SS_tot per output column, or None for fewer than two rows (where
    scikit-learn answers NaN: a single row has no variance to explain).

    A constant column (SS_tot = 0) scores 1 when predicted exactly and 0 otherwise, as
    scikit-learn's ``force_finite=True`` (its default) does.
    """
    if len(y_true) < 2:
        return None
    ss_res = np.sum(errors**2, axis=0)
    ss_tot = np.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
    scores = np.where(ss_res == 0, 1.0, 0.0)
    explained = ss_tot != 0
    scores[explained] = 1.0 - ss_res[explained] / ss_tot[explained]
    return scores


REPORTS: dict[str, Callable[..., Report]] = {
    "classification": classification_report,
    "regression": regression_report,
}
