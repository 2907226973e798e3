"""Whether data fits a trained model's inputs and outputs: a stored data set (its columns
matched by the names of the model's signature) or inline targets to evaluate it on.

No Flask: functions take the session; a misfit raises ``DataError`` naming the request field
(``dataset_id`` or ``targets``), which the API answers with a 422.
"""

from collections.abc import Sequence

import numpy as np

from model_core import Model
from service.datasets.ingest import json_targets
from service.db.models import Dataset
from service.vocabulary import DataError, Task


def dataset_columns(
    dataset: Dataset, model: Model, feature_names: Sequence[str] | None
) -> list[int] | None:
    """The columns of the data set that are the model's inputs (:func:`feature_columns`). Its
    targets must be what the model predicts: the task, the classes (all among the model's) or
    the number of target columns."""
    field, name = "dataset_id", f"data set {dataset.id}"
    if dataset.task.value != model.task:
        raise DataError(field, f"{name} is for {dataset.task.value}; the model does {model.task}")
    columns = feature_columns(dataset, model, feature_names)
    check_targets_fit(dataset, model)
    return columns


def feature_columns(
    dataset: Dataset, model: Model, feature_names: Sequence[str] | None, field: str = "dataset_id"
) -> list[int] | None:
    """The columns of the data set that are the model's inputs, in input order: matched by name
    when the model's signature and the data set both name their features (other columns are
    left out), else all of them in order (None); a misfit is a ``DataError`` on ``field``."""
    name = f"data set {dataset.id}"
    if feature_names and dataset.feature_names:
        position = {column: index for index, column in enumerate(dataset.feature_names)}
        missing = [feature for feature in feature_names if feature not in position]
        if missing:
            raise DataError(field, f"{name} has no column {missing[0]}, an input of the model")
        return [position[feature] for feature in feature_names]
    if dataset.n_features != model.n_features:
        raise DataError(
            field, f"{name} has {dataset.n_features} features; the model takes {model.n_features}"
        )
    return None


def check_targets_fit(dataset: Dataset, model: Model) -> None:
    """Every label of the data set is a class of the model; or as many target columns as the
    model has outputs."""
    field, name = "dataset_id", f"data set {dataset.id}"
    if dataset.task is Task.CLASSIFICATION:
        unknown = [label for label in dataset.classes if label not in model.classes]
        if unknown:
            raise DataError(
                field,
                f"{name} has labels the model does not know: {unknown[:5]}; "
                f"its classes are {model.classes}",
            )
    elif dataset.n_outputs != model.n_outputs:
        raise DataError(
            field,
            f"{name} has {dataset.n_outputs} target columns; the model predicts {model.n_outputs}",
        )


def inline_targets(model: Model, targets: object, n_rows: int, max_label_chars: int) -> np.ndarray:
    """JSON ``targets`` for ``n_rows`` rows: labels as given (none longer than
    ``max_label_chars``), regression values as finite float64 (whether they fit the model is
    ``service.serving.evaluation``'s check). Their number is checked before the array is made."""
    if isinstance(targets, list) and len(targets) != n_rows:
        raise DataError("targets", f"has {len(targets)} entries; instances has {n_rows} rows")
    return json_targets(Task(model.task), targets, max_label_chars)
