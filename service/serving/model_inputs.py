"""Whether data fits a trained model's inputs and outputs: a stored data set or inline targets
to evaluate it on, and the feature names its columns are matched by.

No Flask: functions take the session; a misfit raises ``DataError`` naming the request field
(``dataset_id`` or ``targets``), which the API answers with a 422.
"""

from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session

from model_core import Model
from service.datasets.ingest import json_targets
from service.db import records
from service.db.models import Dataset
from service.vocabulary import DataError, Task


def model_feature_names(session: Session, model_id: int) -> list[str] | None:
    """The feature names of the data set the model was trained on, or None when it had none
    (JSON arrays, a built-in sample) or has since been deleted."""
    return records.trained_on_feature_names(session, model_id)


def check_dataset_fits(dataset: Dataset, model: Model, feature_names: Sequence[str] | None) -> None:
    """The data set's columns are the model's inputs, its targets what the model predicts:
    the task, the number of features, the feature names when both have them, the classes (all
    among the model's) or the number of target columns."""
    field, name = "dataset_id", f"data set {dataset.id}"
    if dataset.task.value != model.task:
        raise DataError(field, f"{name} is for {dataset.task.value}; the model does {model.task}")
    check_features_fit(dataset, model, feature_names)
    check_targets_fit(dataset, model)


def check_features_fit(
    dataset: Dataset, model: Model, feature_names: Sequence[str] | None, field: str = "dataset_id"
) -> None:
    """The data set's columns are the model's inputs: their number, and their names when both
    have them; else ``DataError`` on ``field``."""
    name = f"data set {dataset.id}"
    if dataset.n_features != model.n_features:
        raise DataError(
            field, f"{name} has {dataset.n_features} features; the model takes {model.n_features}"
        )
    names = dataset.feature_names
    if feature_names and names and list(names) != list(feature_names):
        raise DataError(field, f"{name}'s features are {names}; the model's are {feature_names}")


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
