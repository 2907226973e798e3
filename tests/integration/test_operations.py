"""Operations on a real stack: /metrics sums the requests of both API processes (however
the kernel spread them), and a job's request id reaches the Celery worker's JSON lines."""

import json

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import job_body

LIVE = {"route": "/health/live", "method": "GET", "status": "200"}
BATCH = 20
MAX_REQUESTS = 600


def live_requests_counted(stack) -> float:
    """``backprop_http_requests_total`` of ``GET /health/live``, from one scrape."""
    response = stack.get("/metrics")
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "backprop_http_requests_total" and sample.labels == LIVE:
                return sample.value
    return 0.0


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def processes_that_answered(stack, prefix: str) -> set[int]:
    """The API processes whose request lines carry a request id starting with ``prefix``."""
    lines = json_lines((stack.logs / "api.log").read_text())
    return {
        line["process"]
        for line in lines
        if line.get("logger") == "service.requests"
        and line.get("request_id", "").startswith(prefix)
    }


def test_metrics_sum_the_requests_of_both_api_processes(stack):
    before = live_requests_counted(stack)
    prefix = f"spread-{stack.logs.name}-"
    sent = 0
    # A new connection each time, so that either process may accept it; until both have.
    while len(processes_that_answered(stack, prefix)) < 2 and sent < MAX_REQUESTS:
        for _ in range(BATCH):
            response = requests.get(
                stack.base_url + "/health/live",
                headers={"X-Request-ID": f"{prefix}{sent}", "Connection": "close"},
                timeout=10,
            )
            assert response.status_code == 200
            sent += 1
    assert len(processes_that_answered(stack, prefix)) == 2, stack.log_tail()
    # Each scrape is answered by one process or the other: every one sees the sum.
    for _ in range(6):
        assert live_requests_counted(stack) - before == sent


def test_the_request_id_of_a_submission_reaches_the_worker(stack):
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "xor"})
    request_id = f"follow-{stack.logs.name}"
    job = stack.create(
        "/v1/jobs",
        202,
        json=job_body(dataset["id"], epochs=20),
        headers={"X-Request-ID": request_id},
    )
    assert stack.wait_for_job(job["id"])["status"] == "succeeded"
    lines = [
        line for line in json_lines(stack.worker_logs()) if line.get("request_id") == request_id
    ]
    assert any(f"job {job['id']} succeeded" in line["message"] for line in lines), stack.log_tail()
