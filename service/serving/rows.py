"""The rows a request sends a model: JSON ``instances`` or a CSV body, checked against the model's
width and the row limit, and the labelled rows an evaluation runs on.

No Flask: a problem raises ``DataError`` naming the request field, which the API answers with a
422 whose message is the error's ``summary``.
"""

import numpy as np
from sqlalchemy.orm import Session

from model_core import Model, SpecError
from service.datasets.ingest import numeric_matrix
from service.db import records
from service.db.models import Dataset
from service.serving.csv_predictions import csv_features
from service.serving.evaluation import Report, evaluate
from service.serving.model_inputs import check_dataset_fits, inline_targets, model_feature_names
from service.settings import Settings
from service.vocabulary import DataError


def checked_rows(model: Model, x: np.ndarray, field: str, max_rows: int) -> np.ndarray:
    """Rows ``x`` (n_samples, n_features) from the request's ``field``, checked against the
    model's width and ``max_rows``."""
    if len(x) > max_rows:
        raise DataError(field, f"at most {max_rows} rows per call", "Too many rows.")
    if x.shape[1] != model.n_features:
        message = f"each row needs {model.n_features} values; got {x.shape[1]}"
        raise DataError(field, message, "Wrong number of features.")
    return x


def instances_for(model: Model, instances: object, max_rows: int) -> np.ndarray:
    """The rows of JSON ``instances``, checked against the model's width and ``max_rows``."""
    return checked_rows(model, numeric_matrix(instances, "instances"), "instances", max_rows)


def csv_rows(session: Session, model_id: int, model: Model, body: bytes, max_rows: int):
    """The rows of a CSV body with a header row, its columns matched by the feature names of
    the model's data set when it named them."""
    names = model_feature_names(session, model_id)
    return checked_rows(model, csv_features(body, names), "body", max_rows)


def inline_evaluation_data(model: Model, body: dict, max_rows: int, max_label_chars: int):
    """Inline ``instances``, their ``targets``, no weights, and the field the targets came
    from."""
    x = instances_for(model, body["instances"], max_rows)
    return x, inline_targets(model, body["targets"], len(x), max_label_chars), None, "targets"


def dataset_evaluation_data(session: Session, model_id: int, model: Model, dataset: Dataset):
    """A stored data set's rows, targets and row weights (or None), checked against the model's
    inputs and outputs, and the field they came from."""
    check_dataset_fits(dataset, model, model_feature_names(session, model_id))
    x, y, weights = records.get_dataset_arrays(session, dataset.id)
    return x, y, weights, "dataset_id"


def evaluated(
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    field: str,
    settings: Settings,
    sample_weight: np.ndarray | None = None,
) -> Report:
    """``evaluate`` within MAX_CONFUSION_CLASSES and MAX_REQUEST_MEMORY, its data errors a
    ``DataError`` on the request ``field`` the targets came from."""
    try:
        return evaluate(
            model,
            x,
            y,
            settings.max_confusion_classes,
            settings.max_request_memory,
            sample_weight,
        )
    except SpecError as error:
        raise DataError(field, error.message, "The targets do not fit the model.") from None
