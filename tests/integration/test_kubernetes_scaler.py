"""The query by which KEDA scales the workers (deploy/kubernetes/worker.yaml), run on the
postgres stack while its two workers train and a third job waits: it counts the running jobs,
which a Redis list's length misses, and the queued one, as /metrics does."""

from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.integration.conftest import FINISHED, N_WORKERS, STACK_BACKENDS, Stack
from tests.integration.test_jobs_api import (
    LONG_EPOCHS,
    cancel,
    digits_job,
    read_job,
    submit,
    wait_for,
)

WORKER_MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "worker.yaml"


def scaler_query() -> str:
    (scaled,) = [
        doc
        for doc in yaml.safe_load_all(WORKER_MANIFESTS.read_text())
        if doc["kind"] == "ScaledObject"
    ]
    (trigger,) = scaled["spec"]["triggers"]
    return trigger["metadata"]["query"]


def jobs_on_metrics(stack: Stack) -> dict[str, float]:
    """``backprop_jobs`` of GET /metrics, by status."""
    response = stack.get("/metrics")
    assert response.status_code == 200, response.text
    families = text_string_to_metric_families(response.text)
    (jobs,) = [family for family in families if family.name == "backprop_jobs"]
    return {sample.labels["status"]: sample.value for sample in jobs.samples}


@pytest.mark.parametrize("stack", STACK_BACKENDS[1:], indirect=True)
def test_the_scalers_query_counts_the_running_and_the_queued_jobs(stack, postgres_url):
    digits = stack.create("/v1/datasets", 201, json={"builtin": "digits"})["id"]
    body = digits_job(digits, LONG_EPOCHS)
    jobs = [submit(stack, body).json()["id"] for _ in range(N_WORKERS + 1)]
    engine = create_engine(postgres_url)
    try:
        for job_id in jobs[:N_WORKERS]:
            wait_for(stack, job_id, {"running"}, timeout=60)
        assert read_job(stack, jobs[-1])["status"] == "queued"  # every worker is busy
        with engine.connect() as connection:
            counted = connection.scalar(text(scaler_query()))
        figures = jobs_on_metrics(stack)
        assert figures["running"] >= N_WORKERS and figures["queued"] >= 1
        assert counted == figures["running"] + figures["queued"]
    finally:
        engine.dispose()
        for job_id in jobs:
            cancel(stack, job_id)
        for job_id in jobs:
            wait_for(stack, job_id, FINISHED, timeout=60)
