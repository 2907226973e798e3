"""A canary split on a live stack (issue 23): whichever API process takes a request (gunicorn's
two workers; each request on a new connection), a key goes to the version the hash picks, and
the requests each version served are summed over the processes (Redis on PostgreSQL's stack,
the host's folder on the embedded one)."""

import requests

from service.serving.rollout import pick_version
from tests.factories import wait_until

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
