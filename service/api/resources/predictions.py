"""The prediction log and what is made of it: ``/v1/models/{ref}/predictions`` (a model's
logged rows, paged as epochs are), ``/performance`` and ``/drift``; ``/v1/predictions/{id}`` (one
logged request) and ``/v1/predictions/feedback`` (the truth, once known).

A name alone (``digits``) means every version of it for performance and drift, and its latest
version for the listing; ``digits@production`` and ``digits:3`` one version.
"""

from dataclasses import asdict

import numpy as np
from flask import url_for
from flask.views import MethodView

from service.api.context import db, services
from service.api.errors import ErrorSchema, fail
from service.api.registry import ModelIdentity, cached_model, find_row
from service.api.resources.models import REF_PARAMETER
from service.api.resources.paging import PagedBlueprint
from service.api.schemas.predictions import (
    PREDICTION_ID_PATTERN,
    DriftSchema,
    FeedbackRequestSchema,
    FeedbackSchema,
    LoggedPredictionRowSchema,
    LoggedPredictionSchema,
    PerformanceSchema,
    PredictionQuerySchema,
    WindowQuerySchema,
)
from service.db import predictions, registry
from service.db.models import PredictionRecord, TrainedModel, utcnow
from service.model_refs import parse_ref
from service.serving import live

models_blp = PagedBlueprint(
    "model_predictions",
    __name__,
    url_prefix="/v1/models",
    description="A model's prediction log, live performance and drift",
)
blp = PagedBlueprint(
    "predictions", __name__, url_prefix="/v1/predictions", description="Logged predictions"
)
PREDICTION_ID_PARAMETER = {
    "in": "path",
    "name": "prediction_id",
    "description": "a prediction_id (X-Prediction-Id of the answer)",
    "schema": {"type": "string", "pattern": PREDICTION_ID_PATTERN},
}
NEXT_LINK_DOC = {
    "description": 'Present while more rows match: `<URL of the next page>; rel="next"`',
    "schema": {"type": "string"},
}


def logged_row(record: PredictionRecord) -> dict:
    """A log row as LoggedPredictionRowSchema shows it."""
    return {
        **request_fields(record),
        "id": record.id,
        "row": record.row,
        "inputs": plain(record.inputs),
        "prediction": record.prediction,
        "probabilities": plain(record.probabilities),
        "label": record.label,
    }


def plain(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else values.tolist()


def request_fields(record: PredictionRecord) -> dict:
    return {
        "prediction_id": record.prediction_id,
        "model_id": record.model_id,
        "name": record.model_name,
        "version": record.model_version,
        "alias": record.alias,
        "split_arm": record.split_arm,
        "latency_ms": record.latency_ms,
        "created_at": record.created_at,
    }


def next_page_link(ref: str, query: dict, after: int) -> str:
    """An RFC 8288 link to the page of rows after log id ``after``, with the same filters."""
    kept = {name: query[name].isoformat() for name in ("since", "until") if name in query}
    url = url_for(
        "model_predictions.ModelPredictions", ref=ref, after=after, limit=query["limit"], **kept
    )
    return f'<{url}>; rel="next"'


def versions_of(ref_text: str) -> list[TrainedModel]:
    """The versions a reference stands for in performance and drift: every version of a bare
    name, else the one model it names."""
    ref = parse_ref(ref_text)
    if ref.name is not None and ref.version is None and ref.alias is None:
        versions = registry.list_versions(db(), ref.name)
        if versions:
            return versions
    return [find_row(db(), ref_text)]


def per_version(ref: str, window: str, figures) -> list[dict]:
    """``figures(session, row, model, since, settings)`` of each version ``ref`` stands for."""
    since = utcnow() - live.WINDOWS[window]
    settings = services().settings
    answers = []
    for row in versions_of(ref):
        model = cached_model(ModelIdentity.of(row))
        identity = {"model_id": row.id, "name": row.name, "version": row.version}
        answers.append({**identity, **figures(db(), row, model, since, settings)})
    return answers


@models_blp.route("/<ref>/predictions", parameters=[REF_PARAMETER])
class ModelPredictions(MethodView):
    @models_blp.arguments(PredictionQuerySchema, location="query")
    @models_blp.response(200, LoggedPredictionRowSchema(many=True), headers={"Link": NEXT_LINK_DOC})
    @models_blp.alt_response(404, schema=ErrorSchema)
    def get(self, query: dict, ref: str):
        """The model's logged prediction rows after log id ``after``, oldest first, within
        ``since`` and ``until``; a ``Link: <...>; rel="next"`` header while more match"""
        row = find_row(db(), ref)
        limit = query["limit"]
        found = predictions.list_predictions(
            db(), row.id, query["after"], limit + 1, query.get("since"), query.get("until")
        )
        page = [logged_row(record) for record in found[:limit]]
        if len(found) <= limit:
            return page
        return page, 200, {"Link": next_page_link(ref, query, page[-1]["id"])}


@models_blp.route("/<ref>/performance", parameters=[REF_PARAMETER])
class ModelPerformance(MethodView):
    @models_blp.arguments(WindowQuerySchema, location="query")
    @models_blp.response(200, PerformanceSchema)
    @models_blp.alt_response(404, schema=ErrorSchema)
    def get(self, query: dict, ref: str):
        """Per version over the window: predictions logged, rows labelled, and /evaluate's
        accuracy and per-class recall (or MSE and MAE) on the labelled rows"""
        window = query["window"]
        return {"window": window, "versions": per_version(ref, window, live.performance)}


@models_blp.route("/<ref>/drift", parameters=[REF_PARAMETER])
class ModelDrift(MethodView):
    @models_blp.arguments(WindowQuerySchema, location="query")
    @models_blp.response(200, DriftSchema)
    @models_blp.alt_response(404, schema=ErrorSchema)
    def get(self, query: dict, ref: str):
        """Per version, how far the window's logged inputs and answers drifted from the
        training data: PSI and Kolmogorov-Smirnov per feature, ``drifted`` per the DRIFT_*
        thresholds"""
        window = query["window"]
        return {
            "window": window,
            "thresholds": asdict(live.thresholds(services().settings)),
            "versions": per_version(ref, window, live.drift),
        }


# 32 characters: /feedback is not an id (and GET /feedback is not a route).
@blp.route("/<string(length=32):prediction_id>", parameters=[PREDICTION_ID_PARAMETER])
class LoggedPrediction(MethodView):
    @blp.response(200, LoggedPredictionSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, prediction_id: str):
        """One logged prediction request and its rows (once its process's buffer was
        written: within PREDICTION_LOG_FLUSH_SECONDS)"""
        records = predictions.prediction_rows(db(), prediction_id)
        if not records:
            fail(404, f"No logged prediction {prediction_id}.")
        rows = [
            {key: value for key, value in logged_row(record).items() if key in ROW_FIELDS}
            for record in records
        ]
        return {**request_fields(records[0]), "rows": rows}


ROW_FIELDS = frozenset({"row", "inputs", "prediction", "probabilities", "label"})


@blp.route("/feedback")
class Feedback(MethodView):
    @blp.arguments(FeedbackRequestSchema)
    @blp.response(200, FeedbackSchema)
    def post(self, body: dict):
        """The truth about logged rows: a label (or a target) per prediction_id and row; a
        second one for a row replaces the first. Items naming no logged row are listed in
        ``unknown``"""
        items = [
            predictions.Feedback(item["prediction_id"], item["row"], truth(item))
            for item in body["items"]
        ]
        found = predictions.store_feedback(db(), items)
        unknown = [
            {"index": index, "prediction_id": item.prediction_id, "row": item.row}
            for index, (item, ok) in enumerate(zip(items, found, strict=True))
            if not ok
        ]
        return {"stored": sum(found), "unknown": unknown}


def truth(item: dict):
    return item["label"] if "label" in item else item["target"]
