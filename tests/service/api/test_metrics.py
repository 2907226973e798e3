"""GET /metrics: the request figures after real traffic, the job figures against the rows that
hold them (SQLite and PostgreSQL), METRICS=off, and the METRICS_TOKEN under AUTH=required."""

import dataclasses
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.api.metrics import DatabaseCollector, HttpMetrics
from service.db.models import (
    Dataset,
    EpochMetric,
    TrainingJob,
    Webhook,
    WebhookDelivery,
    utcnow,
)
from service.db.session import make_session_factory
from service.settings import Settings
from service.vocabulary import DeliveryStatus, JobStatus
from tests.conftest import BACKENDS
from tests.factories import XOR_NETWORK, api_key, assert_envelope, bearer, job_body, xor_training
from worker.training import run_training

TOKEN = "scrape-me-0123456789"


def scrape(client, **kwargs) -> dict[tuple[str, frozenset], float]:
    """``{(sample name, labels): value}`` of one scrape, parsed by prometheus_client."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def labels(**values: str) -> frozenset:
    return frozenset(values.items())


def test_a_scrape_counts_the_requests_sent_by_route_method_and_status(client):
    for _ in range(7):
        assert client.get("/health/live").status_code == 200
    for path in ("/v1/jobs/12345", "/v1/jobs/67890"):
        assert client.get(path).status_code == 404
    assert client.get("/no/such/path").status_code == 404
    assert client.delete("/health/live").status_code == 405

    figures = scrape(client)
    live = labels(route="/health/live", method="GET", status="200")
    assert figures["backprop_http_requests_total", live] == 7
    assert figures["backprop_http_request_duration_seconds_count", live] == 7
    assert figures["backprop_http_request_duration_seconds_bucket", live | {("le", "+Inf")}] == 7
    # One series for both job ids: the route is the URL rule, not the path.
    job = labels(route="/v1/jobs/<int:job_id>", method="GET", status="404")
    assert figures["backprop_http_requests_total", job] == 2
    unmatched = labels(route="unmatched", method="GET", status="404")
    assert figures["backprop_http_requests_total", unmatched] == 1
    refused = labels(route="unmatched", method="DELETE", status="405")
    assert figures["backprop_http_requests_total", refused] == 1


def test_predictions_are_counted_by_model_id_and_action(client, sessions):
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    job_id = client.post("/v1/jobs", json=job_body(dataset_id, epochs=20)).get_json()["id"]
    run_training(sessions, job_id)
    model_id = client.get(f"/v1/jobs/{job_id}").get_json()["model_id"]
    rows = {"instances": [[0, 1], [1, 1]]}
    for _ in range(3):
        assert client.post(f"/v1/models/{model_id}/predict", json=rows).status_code == 200
    infer = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [0, 1]}]}
    assert client.post(f"/v2/models/{model_id}/infer", json=infer).status_code == 200
    evaluate = {"instances": [[0, 1]], "targets": [1]}
    assert client.post(f"/v1/models/{model_id}/evaluate", json=evaluate).status_code == 200
    assert client.post(f"/v1/models/{model_id}/explain", json=rows).status_code == 200
    assert client.post("/v1/models/999/predict", json=rows).status_code == 404

    figures = scrape(client)
    predictions = {
        dict(key)["action"]: value
        for (name, key), value in figures.items()
        if name == "backprop_predictions_total"
    }
    assert predictions == {"predict": 3, "infer": 1, "evaluate": 1, "explain": 1}
    assert {
        dict(key)["model_id"] for name, key in figures if name == "backprop_predictions_total"
    } == {str(model_id)}


def add_job(session, dataset: Dataset, **columns) -> TrainingJob:
    job = TrainingJob(
        dataset_id=dataset.id,
        network=XOR_NETWORK,
        training={**xor_training(), "validation_split": 0.25},
        epochs=300,
        **columns,
    )
    session.add(job)
    session.flush()
    return job


def store_jobs_of_every_kind(sessions) -> None:
    """Two new jobs never sent (one 40 s old), one sent, one re-queued after 2 attempts, one
    running at 0.5 s an epoch, one running past its lease, and finished ones (3 attempts)."""
    now = utcnow()
    with sessions() as session:
        dataset = Dataset(
            name="d", task="classification", source="test", n_samples=400, n_features=2,
            n_outputs=2,
        )  # fmt: skip
        session.add(dataset)
        session.flush()
        add_job(session, dataset, created_at=now - timedelta(seconds=40))
        add_job(session, dataset)
        add_job(session, dataset, dispatched_at=now - timedelta(seconds=500))
        add_job(session, dataset, attempt=2, created_at=now - timedelta(hours=5))
        running = add_job(
            session, dataset, status=JobStatus.RUNNING, attempt=1, epoch=2,
            lease_expires_at=now + timedelta(seconds=10),
        )  # fmt: skip
        for epoch, seconds in ((1, 4.0), (2, 0.5)):
            session.add(EpochMetric(job_id=running.id, epoch=epoch, train_loss=1, seconds=seconds))
        add_job(
            session, dataset, status=JobStatus.RUNNING, attempt=1,
            lease_expires_at=now - timedelta(seconds=5),
        )  # fmt: skip
        add_job(session, dataset, status=JobStatus.SUCCEEDED, attempt=3)
        add_job(session, dataset, status=JobStatus.FAILED, attempt=1)
        session.commit()


def collected(sessions) -> dict[str, float]:
    """``{sample name (with its labels): value}`` of the database collector."""
    return {
        sample.name + "".join(f"[{value}]" for value in sample.labels.values()): sample.value
        for family in DatabaseCollector(sessions).collect()
        for sample in family.samples
    }


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_job_figures_are_read_from_the_rows(sessions):
    store_jobs_of_every_kind(sessions)
    figures = collected(sessions)
    assert figures["backprop_database_up"] == 1
    assert {status: figures[f"backprop_jobs[{status}]"] for status in JobStatus} == {
        "queued": 4,
        "running": 2,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 0,
        "pruned": 0,
    }
    assert figures["backprop_queue_depth"] == 4
    assert figures["backprop_job_retries_total"] == 1 + 2
    assert figures["backprop_leases_expired"] == 1
    # The 40 s old job, not the re-queued one from 5 hours ago.
    assert 40 <= figures["backprop_dispatcher_lag_seconds"] < 100
    assert figures["backprop_training_epochs_per_second"] == pytest.approx(1 / 0.5)
    assert figures["backprop_training_samples_per_second"] == pytest.approx(400 * 0.75 / 0.5)


def test_the_figures_of_an_idle_database_are_zero(sessions):
    figures = collected(sessions)
    assert figures["backprop_database_up"] == 1
    assert figures["backprop_dispatcher_lag_seconds"] == 0
    assert figures["backprop_training_epochs_per_second"] == 0


def test_a_database_that_does_not_answer_is_a_figure_not_a_failed_scrape(tmp_path):
    sessions = make_session_factory(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}")
    assert collected(sessions) == {"backprop_database_up": 0}


def test_the_scrape_includes_the_database_figures(client):
    figures = scrape(client)
    assert figures["backprop_database_up", labels()] == 1
    assert figures["backprop_jobs", labels(status="queued")] == 0


def test_metrics_off_is_a_404_and_counts_nothing(settings, sessions):
    app = create_app(dataclasses.replace(settings, metrics="off"))
    client = app.test_client()
    assert_envelope(client.get("/metrics"), 404)
    assert "http_metrics" not in app.extensions


def test_metrics_stays_out_of_the_openapi_document(client):
    assert not any("metrics" in path for path in client.get("/openapi.json").get_json()["paths"])


def authenticated_client(settings, token: str):
    return create_app(dataclasses.replace(settings, auth="required", metrics_token=token))


def test_with_auth_required_only_the_metrics_token_scrapes(settings, sessions):
    client = authenticated_client(settings, TOKEN).test_client()
    tenant_key = api_key(sessions, "acme", "admin")
    for headers in ({}, bearer("scrape-me"), bearer(tenant_key), {"X-API-Key": TOKEN}):
        response = client.get("/metrics", headers=headers)
        assert_envelope(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert scrape(client, headers=bearer(TOKEN))["backprop_database_up", labels()] == 1


def test_with_auth_required_and_no_token_metrics_is_off(settings, sessions):
    client = authenticated_client(settings, "").test_client()
    assert_envelope(client.get("/metrics", headers=bearer("")), 404)


def test_metrics_and_log_format_take_only_their_words():
    with pytest.raises(ValueError, match="METRICS='yes'"):
        Settings.from_env({"METRICS": "yes"})
    with pytest.raises(ValueError, match="LOG_FORMAT='xml'"):
        Settings.from_env({"LOG_FORMAT": "xml"})


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_webhook_deliveries_are_counted_by_status_with_the_oldest_due(sessions):
    now = utcnow()
    with sessions() as session:
        hook = Webhook(url="http://127.0.0.1:9/", events=["alias.moved"], secret_sealed="x")
        session.add(hook)
        session.flush()
        for status, due in (
            (DeliveryStatus.PENDING, now - timedelta(seconds=50)),
            (DeliveryStatus.PENDING, now + timedelta(seconds=60)),
            (DeliveryStatus.FAILED, now - timedelta(hours=1)),
        ):
            session.add(
                WebhookDelivery(
                    webhook_id=hook.id,
                    event_id="msg_1",
                    event_type="alias.moved",
                    body="{}",
                    status=status,
                    next_attempt_at=due,
                )
            )
        session.commit()
    figures = collected(sessions)
    assert {s: figures[f"backprop_webhook_deliveries[{s}]"] for s in DeliveryStatus} == {
        "pending": 2,
        "succeeded": 0,
        "failed": 1,
    }
    assert 50 <= figures["backprop_webhook_delivery_lag_seconds"] < 100


def test_figures_counted_after_a_reset_are_scraped():
    """The labelled figures ``observe`` keeps are forgotten with the rest by ``reset``: the
    requests counted after it are the ones shown."""
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry)
    predict = ("/v1/models/<ref>/predict", "POST", 200, 0.001, "7")
    metrics.observe(*predict)
    metrics.reset()
    metrics.observe(*predict)
    metrics.observe(*predict)
    route = {"route": predict[0], "method": "POST", "status": "200"}
    assert registry.get_sample_value("backprop_http_requests_total", route) == 2
    assert registry.get_sample_value("backprop_http_request_duration_seconds_count", route) == 2
    counted = {"model_id": "7", "action": "predict"}
    assert registry.get_sample_value("backprop_predictions_total", counted) == 2
