"""The rows a request sends a model: JSON ``instances`` (positional), ``records`` or ``columns``
+ ``data`` (by feature name, matched against the model's signature), or a CSV body; checked
against the model's width and the row limit; and the labelled rows an evaluation runs on.

No Flask: a problem raises ``DataError`` naming the request field, which the API answers with a
422 whose message is the error's ``summary``.
"""

from collections.abc import Callable, Sequence
from itertools import chain

import numpy as np
from sqlalchemy.orm import Session

from model_core import Model, SpecError
from service.datasets.ingest import first_non_finite, json_number, numeric_matrix, shown
from service.db import records
from service.db.models import Dataset
from service.serving.csv_predictions import csv_features
from service.serving.evaluation import Report, evaluate
from service.serving.model_inputs import dataset_columns, inline_targets
from service.settings import Settings
from service.signatures import input_names, named_inputs
from service.vocabulary import DataError


def checked_rows(
    model: Model,
    x: np.ndarray,
    field: str,
    max_rows: int,
    path_of: Callable[[int, int], str] | None = None,
) -> np.ndarray:
    """Rows ``x`` (n_samples, n_features) from the request's ``field``, checked against the
    model's width, ``max_rows`` and the magnitude it computes finitely; ``path_of(row,
    column)`` names a value (``field[row][column]`` by default)."""
    if len(x) > max_rows:
        raise DataError(field, f"at most {max_rows} rows per call", "Too many rows.")
    if x.shape[1] != model.n_features:
        message = f"each row needs {model.n_features} values; got {x.shape[1]}"
        raise DataError(field, message, "Wrong number of features.")
    check_within_bound(model, x, path_of or (lambda row, column: f"{field}[{row}][{column}]"))
    return x


def check_within_bound(model: Model, x: np.ndarray, path_of: Callable[[int, int], str]) -> None:
    """A value beyond the model's ``input_bound`` could overflow its forward pass (3e38 in a
    float32 model): refused, naming it, as the model's OpenAPI document says. Two reductions,
    no temporary, for rows that are fine."""
    bound = model.input_bound
    if x.max() <= bound and x.min() >= -bound:
        return
    row, column = np.argwhere(np.abs(x) > bound)[0]
    message = (
        f"is beyond what this model computes finitely in {model.dtype.name}: at most"
        f" {bound:.6g} in magnitude"
    )
    raise DataError(path_of(int(row), int(column)), message, "A value out of the model's range.")


def instances_for(model: Model, instances: object, max_rows: int) -> np.ndarray:
    """The rows of JSON ``instances``, checked against the model's width and ``max_rows``."""
    return checked_rows(model, numeric_matrix(instances, "instances"), "instances", max_rows)


def request_rows(model: Model, signature: dict, body: dict, max_rows: int) -> np.ndarray:
    """The rows of a JSON predict body in whichever of its three forms it came (the schema let
    exactly one through), in the model's input order."""
    if "instances" in body:
        return instances_for(model, body["instances"], max_rows)
    ignore_extra = body.get("extra") == "ignore"
    names = input_names(signature)
    if "records" in body:
        x = records_matrix(names, body["records"], ignore_extra, max_rows)
        return checked_rows(model, x, "records", max_rows, lambda r, c: f"records[{r}].{names[c]}")
    columns, data = body["columns"], body["data"]
    x = columns_matrix(names, columns, data, ignore_extra)
    return checked_rows(
        model, x, "data", max_rows, lambda r, c: f"data[{r}][{columns.index(names[c])}]"
    )


def records_matrix(
    names: Sequence[str], given: object, ignore_extra: bool, max_rows: int
) -> np.ndarray:
    """``records``, one object per row, as float64 rows (n_rows, n_features) in ``names``'
    order: a missing feature, an unknown one (unless ``ignore_extra``) or a value that is not a
    finite number is a ``DataError`` naming it, ``records[3].petal_width``."""
    if not isinstance(given, list) or not given:
        raise DataError("records", "must be a non-empty list of objects")
    if len(given) > max_rows:
        raise DataError("records", f"at most {max_rows} rows per call", "Too many rows.")
    for index, record in enumerate(given):
        if not isinstance(record, dict):
            raise DataError(f"records[{index}]", "must be an object of feature values")
    try:
        rows = [[record[name] for name in names] for record in given]
    except KeyError:
        raise first_missing(names, given) from None
    if not ignore_extra and any(len(record) != len(names) for record in given):
        raise first_unknown(names, given)
    return named_numbers(rows, lambda row, column: f"records[{row}].{names[column]}")


def first_missing(names: Sequence[str], given: list[dict]) -> DataError:
    for index, record in enumerate(given):
        for name in names:
            if name not in record:
                return DataError(f"records[{index}].{name}", "missing", "A feature is missing.")
    raise AssertionError("no record misses a feature")


def first_unknown(names: Sequence[str], given: list[dict]) -> DataError:
    known = set(names)
    for index, record in enumerate(given):
        for key in record:
            if key not in known:
                return unknown_feature(f"records[{index}].{key}")
    raise AssertionError("no record has an unknown feature")


def unknown_feature(path: str) -> DataError:
    message = 'not an input of the model (send "extra": "ignore" to leave such fields out)'
    return DataError(path, message, "A feature the model does not take.")


def columns_matrix(
    names: Sequence[str], columns: object, data: object, ignore_extra: bool
) -> np.ndarray:
    """``data``'s rows, whose columns ``columns`` names, as float64 rows in ``names``' order."""
    if not isinstance(columns, list) or not all(isinstance(name, str) for name in columns):
        raise DataError("columns", "must be a list of feature names")
    position = {}
    for index, name in enumerate(columns):
        if name in position:
            raise DataError(f"columns[{index}]", f"{shown(name)} appears twice")
        if name not in names and not ignore_extra:
            raise unknown_feature(f"columns[{index}]")
        position[name] = index
    for name in names:
        if name not in position:
            raise DataError("columns", f"missing {name}", "A feature is missing.")
    x = numeric_matrix(data, "data")
    if x.shape[1] != len(columns):
        raise DataError("data", f"each row needs {len(columns)} values, one per column")
    return x[:, [position[name] for name in names]]


def named_numbers(rows: list[list], path_of: Callable[[int, int], str]) -> np.ndarray:
    """``rows`` of JSON values as finite float64, the first that is not one a ``DataError``
    at ``path_of(row, column)``. A valid body pays for one pass over the cells' types."""
    array = plain_numbers(rows)
    if array is None:
        array = np.array(
            [
                [json_number(cell, path_of(row, column)) for column, cell in enumerate(cells)]
                for row, cells in enumerate(rows)
            ]
        )
    index = first_non_finite(array)
    if index is not None:
        raise DataError(path_of(*index), "NaN and infinity are not allowed")
    return array


def plain_numbers(rows: list[list]) -> np.ndarray | None:
    """``rows`` as float64 when every cell is a JSON number within float64's range, else None."""
    if not set(map(type, chain.from_iterable(rows))) <= {int, float}:
        return None
    try:
        return np.array(rows, dtype=np.float64)
    except OverflowError:  # an integer beyond 1.8e308
        return None


def csv_rows(model: Model, signature: dict, body: bytes, max_rows: int) -> np.ndarray:
    """The rows of a CSV body with a header row, its columns matched by the names of the
    model's signature when the training data named them (else every column, in order)."""
    return checked_rows(model, csv_features(body, named_inputs(signature)), "body", max_rows)


def inline_evaluation_data(model: Model, body: dict, max_rows: int, max_label_chars: int):
    """Inline ``instances``, their ``targets``, no weights, and the field the targets came
    from."""
    x = instances_for(model, body["instances"], max_rows)
    return x, inline_targets(model, body["targets"], len(x), max_label_chars), None, "targets"


def dataset_evaluation_data(session: Session, model: Model, signature: dict, dataset: Dataset):
    """A stored data set's rows, its columns matched to the model's inputs by the signature's
    names when both have names, its targets (checked against the model's outputs) and row
    weights (or None); and the field they came from."""
    columns = dataset_columns(dataset, model, named_inputs(signature))
    x, y, weights = records.get_dataset_arrays(session, dataset.id)
    return (x if columns is None else x[:, columns]), y, weights, "dataset_id"


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
