"""The predict handlers' one call into the prediction log: a prediction id for every answer,
and (when the log is on and the request is sampled) the request handed to this process's
buffer (service/serving/prediction_log.py), which a background thread writes."""

import atexit
import random
import time

import numpy as np
from flask import Flask, current_app, g

from service.api.registry import ServedModel
from service.db.models import utcnow
from service.serving.prediction_log import LoggedRequest, PredictionLog, new_prediction_id
from service.settings import Settings

PREDICTION_ID_HEADER = "X-Prediction-Id"
EXTENSION = "prediction_log"


def install_prediction_log(app: Flask, settings: Settings) -> None:
    """Give ``app`` its prediction log (none with PREDICTION_LOG=off), its drops counted in
    /metrics when that is served, and its last rows flushed when the process exits."""
    if settings.prediction_log == "off":
        return
    http_metrics = app.extensions.get("http_metrics")
    log = PredictionLog(
        app.extensions["backprop"].sessions,
        settings.prediction_log_buffer_rows,
        settings.prediction_log_flush_seconds,
    )
    if http_metrics is not None:
        log.on_dropped = http_metrics.prediction_log_dropped.inc
    app.extensions[EXTENSION] = log
    atexit.register(log.close)


def route_of(served: ServedModel) -> tuple[str | None, str | None]:
    """The alias the request named (``production`` of ``digits@production``), and when that
    alias splits its traffic, the arm that answered: its version, as text."""
    route = served.route
    if route is None or route.alias is None:
        return None, None
    arm = str(served.version) if len(route.arms) > 1 else None
    return route.alias.split("@", 1)[1], arm


def log_prediction(served: ServedModel, x: np.ndarray, arrays: dict[str, np.ndarray]) -> str:
    """The answer's prediction id; the request's rows ``x`` and answers ``arrays`` (of
    ``prediction_arrays``) buffered for the log when it is on and this request is sampled."""
    prediction_id = new_prediction_id()
    extensions = current_app.extensions
    log: PredictionLog | None = extensions.get(EXTENSION)
    settings = extensions["backprop"].settings
    if log is None or random.random() >= settings.prediction_log_sample:
        return prediction_id
    alias, arm = route_of(served)
    state = g._get_current_object()  # one lookup of the proxy, not one per use
    log.record(
        LoggedRequest(
            prediction_id=prediction_id,
            tenant=state.principal.tenant,
            model_id=served.model_id,
            model_name=served.name,
            model_version=served.version,
            alias=alias,
            split_arm=arm,
            x=x,
            keep_inputs=settings.prediction_log_inputs == "on",
            predictions=arrays["predictions"],
            probabilities=arrays.get("probabilities"),
            latency_ms=(time.perf_counter() - state.request_started) * 1000.0,
            created_at=utcnow(),
        )
    )
    return prediction_id
