"""Predictions as CSV both ways: rows of features read from a ``text/csv`` body, with a
header row as data set uploads take it (service/datasets/ingest.py parses it), and the answer
written as CSV.

A problem with the body raises ``DataError`` on the field ``body``, naming the line and column
as data set uploads do: ``body: line 3, column 'petal_width': 'n/a' is not a number``.
"""

import csv
import io
from collections.abc import Sequence

import numpy as np

from model_core import Model
from service.datasets.ingest import column_indices

CSV_FIELD = "body"


def csv_features(data: bytes, feature_names: Sequence[str] | None) -> np.ndarray:
    """Float64 rows (n_rows, n_columns) from CSV bytes whose first line names the columns.

    When the model's data set named its features, the columns are picked by those names, in
    the model's order, and any others (an id, the target) are left out; otherwise every column
    is a feature, in the file's order (the caller checks their number against the model).
    """
    # pyarrow (service/datasets/tables.py) is imported by the first CSV body, not at start-up:
    # an API process that never reads a CSV file never holds its modules and objects.
    from service.datasets.tables import (
        checked_numbers,
        csv_cell_errors,
        open_csv,
        read_csv_numbers,
    )

    csv_file = open_csv(io.BytesIO(data), header=True, field=CSV_FIELD)
    if feature_names:
        columns = column_indices(csv_file.header, feature_names, CSV_FIELD)
    else:
        columns = list(range(csv_file.header.width))
    numbers = read_csv_numbers(csv_file, columns, labels=[])
    cell_errors = csv_cell_errors(csv_file, columns, CSV_FIELD)
    return checked_numbers(numbers, range(len(columns)), cell_errors)


def prediction_columns(model: Model) -> list[str]:
    """The header of a CSV answer: ``prediction`` then ``probability_<label>`` per class for a
    classifier; ``prediction`` for one regression output, ``prediction_0``... for several."""
    if model.task == "classification":
        return ["prediction", *(f"probability_{label}" for label in model.classes)]
    if model.n_outputs == 1 and model.target_ndim == 1:
        return ["prediction"]
    return [f"prediction_{output}" for output in range(model.n_outputs)]


def predictions_csv(model: Model, arrays: dict[str, np.ndarray]) -> str:
    """``serving.prediction_arrays`` as CSV text: the header row, then one line per row."""
    predictions = arrays["predictions"]
    if "probabilities" in arrays:
        rows = zip(predictions.tolist(), arrays["probabilities"].tolist(), strict=True)
        lines = ([label, *probabilities] for label, probabilities in rows)
    else:
        lines = predictions.reshape(len(predictions), -1).tolist()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(prediction_columns(model))
    writer.writerows(lines)
    return text.getvalue()
