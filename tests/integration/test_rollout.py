"""A canary split on a live stack (issue 23): whichever API process takes a request (the API's
two workers; each request on a new connection), a key goes to the version the hash picks, and
the requests each version served are summed over the processes (Redis on PostgreSQL's stack,
the host's folder on the embedded one). A promotion gate asked for later is run by the real
`backprop webhook-worker`, and every API process sees the alias it moved."""

import requests

from service.serving.rollout import pick_version
from tests.factories import wait_until
from tests.integration.conftest import ON_POSTGRES

KEYS = [f"customer-{i}" for i in range(120)]
ROW = [[5.9, 3.0, 5.1, 1.8]]


def test_keys_route_alike_in_every_process_and_counts_add_up(stack):
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "iris"})
    network = {"layers": [{"units": 3, "activation": "softmax"}]}
    body = {"dataset_id": dataset["id"], "network": network, "model_name": "canary-iris"}
    for seed in (1, 2):
        job = stack.create("/v1/jobs", 202, json={**body, "training": {"epochs": 3, "seed": seed}})
        assert stack.wait_for_job(job["id"])["status"] == "succeeded"
    split = {"versions": [{"version": 1, "weight": 70}, {"version": 2, "weight": 30}]}
    url = f"{stack.base_url}/v1/models/canary-iris/aliases/production"
    assert requests.put(url, json=split, timeout=30).status_code == 200
    arms = [(1, 70), (2, 30)]
    for key in KEYS:
        answer = requests.post(
            f"{stack.base_url}/v1/models/canary-iris@production/predict",
            json={"instances": ROW},
            headers={"X-Routing-Key": key, "Connection": "close"},
            timeout=30,
        )
        assert int(answer.headers["X-Model-Version"]) == pick_version(
            arms, "canary-iris@production", key
        )
    expected = {1: 0, 2: 0}
    for key in KEYS:
        expected[pick_version(arms, "canary-iris@production", key)] += 1

    def served() -> dict[int, int]:
        shown = requests.get(url, timeout=30).json()
        return {arm["version"]: arm["served"] for arm in shown["versions"]}

    wait_until(lambda: served() == expected, timeout=15, what=f"counts {expected}")


@ON_POSTGRES
def test_a_gate_asked_for_later_is_run_by_the_webhook_worker_and_moves_the_alias(stack):
    trained_on, held_out = (
        stack.create("/v1/datasets", 201, json={"builtin": "iris"})["id"] for _ in range(2)
    )
    network = {"layers": [{"units": 3, "activation": "softmax"}]}
    body = {"dataset_id": trained_on, "network": network, "model_name": "gated-iris"}
    for seed in (1, 2):
        job = stack.create("/v1/jobs", 202, json={**body, "training": {"epochs": 3, "seed": seed}})
        assert stack.wait_for_job(job["id"])["status"] == "succeeded"
    url = f"{stack.base_url}/v1/models/gated-iris/aliases/production"
    assert requests.put(url, json={"version": 1}, timeout=30).status_code == 200
    gate = {"version": 2, "dataset_id": held_out, "require": {"accuracy": {"min": 0}}}
    answer = stack.post(
        "/v1/models/gated-iris/aliases/production/promote",
        json=gate,
        headers={"Prefer": "respond-async"},
    )
    assert answer.status_code == 202, answer.text

    def ended() -> dict | None:
        operation = stack.get(answer.headers["Location"]).json()
        return operation if operation["status"] in ("succeeded", "failed") else None

    operation = wait_until(ended, timeout=60, what="the gate's operation")
    assert operation["status"] == "succeeded", operation
    assert operation["result"]["alias"]["version"] == 2
    for _ in range(4):  # new connections: whichever API process answers
        shown = requests.get(
            f"{stack.base_url}/v1/models/gated-iris@production",
            headers={"Connection": "close"},
            timeout=30,
        )
        assert shown.json()["version"] == 2
