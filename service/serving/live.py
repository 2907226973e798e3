"""Live figures of a served model over a window of its prediction log: how many predictions,
how often it was right once the truth was fed back (scored by /evaluate's own code), and how
far its inputs and answers drifted from its training data (service/serving/drift.py).
"""

from datetime import datetime, timedelta
from numbers import Real
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from model_core import Model
from service.db import predictions
from service.db.models import TrainedModel
from service.serving.drift import (
    Reference,
    Thresholds,
    answer_column,
    binned_report,
    drift_report,
    reference_from_npz,
)
from service.serving.evaluation import ClassificationReport, evaluate
from service.serving.model_inputs import inline_targets
from service.settings import Settings
from service.signatures import input_names

WINDOWS = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}
# The newest rows of a window that accuracy and drift read (a window may hold millions).
MAX_WINDOW_ROWS = 100_000
# The window of the figures /metrics exports (the dispatcher's).
METRICS_WINDOW = "1d"


def usable_label(model: Model, label: Any) -> bool:
    """Whether a fed-back ``label`` can score ``model``: one of its classes, or a number (a
    list of ``n_outputs`` numbers for several targets)."""
    if model.task == "classification":
        return label in model.classes
    values = label if isinstance(label, list) else [label]
    numbers = all(isinstance(v, Real) and not isinstance(v, bool) for v in values)
    return numbers and len(values) == model.n_outputs


def performance(
    session: Session, row: TrainedModel, model: Model, since: datetime, settings: Settings
) -> dict[str, Any]:
    """``{"predictions", "labelled", "scored"}`` since ``since`` and, once some labelled rows
    kept their inputs, /evaluate's figures on them: ``accuracy`` and ``per_class`` recall, or
    ``mse`` and ``mae``."""
    labelled = predictions.labelled_rows(session, row.id, since, MAX_WINDOW_ROWS)
    scored = [(x, y) for x, y in labelled if x is not None and usable_label(model, y)]
    figures = {
        "predictions": predictions.count_since(session, row.id, since),
        "labelled": len(labelled),
        "scored": len(scored),
        "hourly": hourly(predictions.timed_rows(session, row.id, since, MAX_WINDOW_ROWS), model),
    }
    if not scored:
        return figures
    x = np.asarray([x for x, _ in scored], dtype=np.float64)
    y = inline_targets(model, [y for _, y in scored], len(scored), settings.max_label_chars)
    report = evaluate(
        model,
        x,
        y,
        settings.max_confusion_classes,
        settings.max_request_memory,
    )
    return {**figures, **report_figures(report)}


def hourly(rows: list[tuple[datetime, Any, Any]], model: Model) -> list[dict[str, Any]]:
    """Per hour (UTC, oldest first) of ``rows`` (created_at, prediction, label): the rows
    predicted, those labelled, and for a classifier the share of the labelled ones it got
    right (None when none was labelled)."""
    hours: dict[datetime, list[int]] = {}
    for created_at, prediction, label in rows:
        counts = hours.setdefault(created_at.replace(minute=0, second=0, microsecond=0), [0, 0, 0])
        counts[0] += 1
        if label is not None:
            counts[1] += 1
            counts[2] += prediction == label
    classifier = model.task == "classification"
    return [
        {
            "hour": hour,
            "predictions": predicted,
            "labelled": labelled,
            "accuracy": correct / labelled if classifier and labelled else None,
        }
        for hour, (predicted, labelled, correct) in sorted(hours.items())
    ]


def report_figures(report) -> dict[str, Any]:
    if isinstance(report, ClassificationReport):
        per_class = [
            {"label": c.label, "recall": c.recall, "support": c.support} for c in report.per_class
        ]
        return {"accuracy": report.accuracy, "per_class": per_class}
    return {"mse": report.mse, "mae": report.mae}


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(settings.drift_psi, settings.drift_ks, settings.drift_p)


def drift(
    session: Session, row: TrainedModel, model: Model, since: datetime, settings: Settings
) -> dict[str, Any]:
    """``{"rows", ...}``: the window's rows compared and, with at least DRIFT_MIN_ROWS of
    them, ``drift_report``'s figures (PSI alone from the bin counts when the inputs were not
    kept); else a ``message`` saying why there are none."""
    blob = predictions.reference_blob(session, row.id)
    if blob is None:
        return {
            "rows": 0,
            "message": "This model was trained before reference profiles were"
            " kept: there is nothing to compare with.",
        }
    reference, names = reference_from_npz(blob), input_names(row.signature)
    window = predictions.window_rows(session, row.id, since, MAX_WINDOW_ROWS)
    n_rows = len(window.inputs)
    if n_rows >= settings.drift_min_rows:
        x = np.asarray(window.inputs, dtype=np.float64)
        answers = answer_column(model, np.asarray(window.predictions))
        report = drift_report(reference, x, answers, names, thresholds(settings))
        return {"rows": n_rows, **report}
    counts = binned_inputs(session, row.id, since, reference)
    n_binned = int(counts[0].sum()) if counts else 0
    if n_binned >= settings.drift_min_rows:
        logged = predictions.window_predictions(session, row.id, since, MAX_WINDOW_ROWS)
        answers = answer_column(model, np.asarray(logged))
        report = binned_report(reference, counts, answers, names, thresholds(settings))
        return {"rows": n_binned, **report}
    message = (
        f"{max(n_rows, n_binned)} rows with their inputs in this window; drift needs at least"
        f" DRIFT_MIN_ROWS ({settings.drift_min_rows})."
    )
    return {"rows": max(n_rows, n_binned), "message": message}


def binned_inputs(
    session: Session, model_id: int, since: datetime, reference: Reference
) -> list[np.ndarray]:
    """Per feature, the rows counted in each of its reference bins (PREDICTION_LOG_INPUTS=off)
    over the hours that start at ``since`` or later."""
    counts = [np.zeros(len(p.edges) + 1, dtype=np.int64) for p in reference.features]
    for feature, bin_, count in predictions.bin_counts_since(session, model_id, since):
        counts[feature][bin_] += count
    return counts


def live_figures(
    session: Session, row: TrainedModel, model: Model, now: datetime, settings: Settings
) -> dict[str, Any]:
    """What /metrics exports of a model: the last day's rows, PSI per feature (when there
    were enough rows) and live accuracy (when some rows were labelled)."""
    since = now - WINDOWS[METRICS_WINDOW]
    drifted = drift(session, row, model, since, settings)
    scored = performance(session, row, model, since, settings)
    psi = {feature["name"]: feature["psi"] for feature in drifted.get("features", [])}
    return {
        "computed_at": now.isoformat(),
        "rows": drifted["rows"],
        "psi": psi,
        "accuracy": scored.get("accuracy"),
    }
