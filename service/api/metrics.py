"""``GET /metrics``: Prometheus text with the API's request figures and the database's job
figures.

* Requests (``HttpMetrics``) are counted by the API process that answers them. Under Granian,
  ``backprop api`` sets ``PROMETHEUS_MULTIPROC_DIR`` before prometheus_client is first imported
  (service/metrics_files.py), so each process writes its figures to a file there and a scrape,
  whichever process answers it, sums them all.
* Jobs, the queue, training speed, retries, leases and the dispatcher's lag are read from the
  database at scrape time (``DatabaseCollector``), so workers on every host are counted; so are
  the live figures of each model (drift per feature, live accuracy), as the dispatcher last
  stored them.

Labels stay bounded: a route is its URL rule (``/v1/models/<ref>/predict``), never the path
asked for, and a model is its id, never its name. The figures span tenants, so with
``AUTH=required`` the endpoint takes only ``METRICS_TOKEN``, never a tenant's key.
"""

import hmac
import logging
import os
from collections.abc import Iterator

from flask import Flask, Response
from flask_smorest import abort
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.api.auth import bearer_token
from service.db import predictions
from service.db.figures import DeliveryFigures, JobFigures, delivery_figures, job_figures
from service.db.models import utcnow
from service.serving.rollout import ShadowMetrics
from service.settings import Settings
from service.vocabulary import JobStatus

logger = logging.getLogger(__name__)

HTTP_LABELS = ("route", "method", "status")
# A small prediction takes about 0.3 ms, a data set upload up to minutes.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip
# The last segment of the routes whose answers count as predictions of the model they name
# (in their X-Model-Id header).
PREDICTING_ACTIONS = frozenset({"predict", "infer", "evaluate", "explain", "importance"})
METRICS_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}


class HttpMetrics:
    """The request figures of this API process."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "backprop_http_requests",
            "HTTP requests answered, by route (URL rule), method and status",
            HTTP_LABELS,
            registry=registry,
        )
        self.latency = Histogram(
            "backprop_http_request_duration_seconds",
            "Time from the request's arrival to its response's headers",
            HTTP_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "backprop_predictions",
            "Successful predict, infer and evaluate calls, by model id",
            ("model_id", "action"),
            registry=registry,
        )
        self.prediction_log_dropped = Counter(
            "backprop_prediction_log_dropped_rows",
            "Prediction log rows dropped: the process's buffer was full, or the database refused"
            " a batch",
            registry=registry,
        )
        self.shadows = ShadowMetrics.registered(registry)
        # Each labelled child, kept on first use: ``labels()`` checks and looks the labels up
        # under a lock at every call (1 us each, three per prediction).
        self.http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.prediction_children: dict[tuple[str, str], Counter] = {}

    def reset(self) -> None:
        """Forget every figure counted so far (tests that share one app start each at zero)."""
        shadows = (self.shadows.requests, self.shadows.rows, self.shadows.abs_difference)
        for metric in (self.requests, self.latency, self.predictions, *shadows):
            metric.clear()
        self.prediction_log_dropped.reset()
        self.http_children.clear()
        self.prediction_children.clear()

    def observe(
        self, route: str, method: str, status: int, seconds: float, model_id: str | None
    ) -> None:
        """Count one answered request (and, for a model's prediction, the model's)."""
        requests, latency = self.http_children_of(route, method, status)
        requests.inc()
        latency.observe(seconds)
        if model_id is not None and status == 200:
            action = route.rsplit("/", 1)[-1]
            if action in PREDICTING_ACTIONS:
                self.prediction_counter_of(model_id, action).inc()

    def http_children_of(self, route: str, method: str, status: int) -> tuple[Counter, Histogram]:
        children = self.http_children.get((route, method, status))
        if children is None:
            labels = (route, method, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self.http_children[(route, method, status)] = children
        return children

    def prediction_counter_of(self, model_id: str, action: str) -> Counter:
        counter = self.prediction_children.get((model_id, action))
        if counter is None:
            counter = self.prediction_children[(model_id, action)] = self.predictions.labels(
                model_id, action
            )
        return counter


class DatabaseCollector:
    """The job figures, read from the database at each scrape (service/db/figures.py)."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        try:
            with self.sessions() as session:
                now = utcnow()
                figures = job_figures(session, now)
                deliveries = delivery_figures(session, now)
                live = predictions.live_figures(session)
        except SQLAlchemyError as error:
            logger.warning("/metrics: the database did not answer: %s", error)
            yield GaugeMetricFamily("backprop_database_up", DATABASE_UP_HELP, value=0)
            return
        yield GaugeMetricFamily("backprop_database_up", DATABASE_UP_HELP, value=1)
        yield from job_metrics(figures)
        yield from delivery_metrics(deliveries)
        yield from live_metrics(live)


DATABASE_UP_HELP = "1 when the database answered this scrape's queries (the job figures follow)"


def job_metrics(figures: JobFigures) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "backprop_jobs", "Jobs in each status, every tenant", labels=["status"]
    )
    for status, count in figures.jobs.items():
        jobs.add_metric([status.value], count)
    yield jobs
    yield GaugeMetricFamily(
        "backprop_queue_depth",
        "Jobs queued, waiting for a worker",
        value=figures.jobs[JobStatus.QUEUED],
    )
    yield CounterMetricFamily(
        "backprop_job_retries",
        "Attempts after a job's first, each after a lease expired (its worker died)",
        value=figures.retries,
    )
    yield GaugeMetricFamily(
        "backprop_leases_expired",
        "Running jobs whose lease expired, not yet re-queued by the dispatcher",
        value=figures.expired_leases,
    )
    yield GaugeMetricFamily(
        "backprop_dispatcher_lag_seconds",
        "Age of the oldest new job not yet sent to the broker (0: none waits)",
        value=figures.dispatch_lag_seconds,
    )
    yield GaugeMetricFamily(
        "backprop_training_epochs_per_second",
        "Epochs trained per second by the running jobs (each at its latest epoch's pace)",
        value=figures.speed.epochs_per_second,
    )
    yield GaugeMetricFamily(
        "backprop_training_samples_per_second",
        "Training rows per second of the running jobs (rows less the validation share)",
        value=figures.speed.samples_per_second,
    )


def delivery_metrics(figures: DeliveryFigures) -> Iterator[Metric]:
    deliveries = GaugeMetricFamily(
        "backprop_webhook_deliveries",
        "Webhook deliveries in each status, every tenant",
        labels=["status"],
    )
    for status, count in figures.deliveries.items():
        deliveries.add_metric([status.value], count)
    yield deliveries
    yield GaugeMetricFamily(
        "backprop_webhook_delivery_lag_seconds",
        "How long the oldest pending webhook delivery has been due (0: none is)",
        value=figures.lag_seconds,
    )


def live_metrics(live: list[tuple[int, dict]]) -> Iterator[Metric]:
    """The dispatcher's latest live figures per model (service/serving/live.py): read as
    stored, never computed at scrape time."""
    psi = GaugeMetricFamily(
        "backprop_model_feature_psi",
        "Population stability index of a model's input feature over the last day, against its"
        " training rows (recomputed by the dispatcher every DRIFT_INTERVAL seconds)",
        labels=["model_id", "feature"],
    )
    accuracy = GaugeMetricFamily(
        "backprop_model_live_accuracy",
        "Accuracy over the last day's predictions that were given feedback",
        labels=["model_id"],
    )
    rows = GaugeMetricFamily(
        "backprop_model_drift_rows",
        "Logged rows (with inputs) of the last day that drift was computed on",
        labels=["model_id"],
    )
    for model_id, figures in live:
        rows.add_metric([str(model_id)], figures["rows"])
        for feature, value in figures["psi"].items():
            psi.add_metric([str(model_id), feature], value)
        if figures["accuracy"] is not None:
            accuracy.add_metric([str(model_id)], figures["accuracy"])
    yield from (psi, accuracy, rows)


def metrics_served(settings: Settings) -> bool:
    """Whether ``/metrics`` answers: ``METRICS=on``, and with ``AUTH=required`` a token set."""
    if settings.metrics == "off":
        return False
    return settings.auth != "required" or bool(settings.metrics_token)


def multiprocess_directory() -> str | None:
    """The folder of prometheus_client's multiprocess mode, which prometheus_client itself chose
    from this variable when it was imported."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def scraped_registry(own: CollectorRegistry, database: DatabaseCollector) -> CollectorRegistry:
    """What a scrape reads: every API process's files in multiprocess mode, else this process's
    own figures; and the database's."""
    directory = multiprocess_directory()
    registry = own
    if directory is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, directory)
    registry.register(database)
    return registry


def install_metrics(app: Flask, settings: Settings, sessions: sessionmaker[Session]) -> None:
    """Serve ``/metrics`` on ``app`` and keep its ``HttpMetrics`` in ``app.extensions`` (none
    when /metrics is off: nothing is counted then). The route is not in the OpenAPI document."""
    if not metrics_served(settings):
        return
    own = CollectorRegistry()
    app.extensions["http_metrics"] = HttpMetrics(own)
    registry = scraped_registry(own, DatabaseCollector(sessions))
    token = settings.metrics_token if settings.auth == "required" else None

    def metrics() -> Response:
        if token is not None:
            check_bearer(token)
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])


def check_bearer(token: str) -> None:
    """Answer 401 unless the request's ``Authorization`` is ``Bearer <token>``."""
    given = bearer_token()
    if given is None or not hmac.compare_digest(given.encode(), token.encode()):
        abort(
            401,
            message="/metrics needs the METRICS_TOKEN as a bearer token.",
            headers=METRICS_CHALLENGE,
        )
