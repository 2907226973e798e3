"""Sweeps against real processes on both backends: trials spread over the two workers, the
next trial queued by the worker that ends one, the best model registered, and cancel."""

import time

from tests.integration.conftest import Stack

# About 6 ms an epoch on the digits sample, with batches of 32.
DIGITS_NETWORK = {
    "layers": [{"units": 32, "activation": "relu"}, {"units": 10, "activation": "softmax"}],
}
SWEEP_ENDED = {"succeeded", "failed", "cancelled"}


def digits_sweep(dataset_id: int, epochs: int, **changes) -> dict:
    return {
        "dataset_id": dataset_id,
        "network": DIGITS_NETWORK,
        "training": {"epochs": epochs, "batch_size": 32, "seed": 3, "validation_split": 0.2},
        "search": {
            "method": "grid",
            "parameters": {
                "training.optimizer": ["sgd", "adam"],
                "network.layers[0].units": [16, 32],
            },
        },
        "max_parallel": 2,
        **changes,
    }


def wait_for_sweep(stack: Stack, sweep_id: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep = stack.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["status"] in SWEEP_ENDED:
            return sweep
        time.sleep(0.2)
    raise AssertionError(f"sweep {sweep_id} still running after {timeout} s\n{stack.log_tail()}")


def workers_that_trained(stack: Stack, job_ids: list[int]) -> set[str]:
    return {
        path.name
        for path in stack.logs.glob("worker-*.log")
        if any(f"job {job_id} succeeded" in path.read_text() for job_id in job_ids)
    }


def test_a_sweep_runs_on_both_workers_and_registers_its_best_model(stack):
    dataset_id = stack.create("/v1/datasets", 201, json={"builtin": "digits"})["id"]
    body = digits_sweep(dataset_id, 60, model_name="digits-sweep")
    sweep = stack.create("/v1/sweeps", 202, json=body)
    counts = sweep["counts"]
    # Workers may claim the first trials before the answer is written: queued or running.
    assert counts["queued"] + counts["running"] <= 2 and sum(counts.values()) == 4
    shown = wait_for_sweep(stack, sweep["id"])
    assert shown["status"] == "succeeded", shown
    assert shown["counts"]["succeeded"] == 4
    board = shown["leaderboard"]
    assert [entry["metric"] for entry in board] == sorted(entry["metric"] for entry in board)
    assert workers_that_trained(stack, [entry["job_id"] for entry in board]) == {
        "worker-0.log",
        "worker-1.log",
    }
    model = stack.get("/v1/models/digits-sweep").json()
    assert model["id"] == board[0]["model_id"] == shown["model_id"]
    for entry in board:
        job = stack.get(f"/v1/jobs/{entry['job_id']}").json()
        assert job["status"] == "succeeded" and job["epoch"] == 60


def test_a_cancelled_sweep_stops_its_running_trials_and_queues_no_more(stack):
    dataset_id = stack.create("/v1/datasets", 201, json={"builtin": "digits"})["id"]
    sweep = stack.create("/v1/sweeps", 202, json=digits_sweep(dataset_id, 5000))
    deadline = time.monotonic() + 60
    while stack.get(f"/v1/sweeps/{sweep['id']}").json()["counts"]["running"] < 1:
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.1)
    cancelled = stack.create(f"/v1/sweeps/{sweep['id']}/cancel", 202)
    assert cancelled["status"] == "cancelled"
    for entry in cancelled["leaderboard"]:
        job = stack.wait_for_job(entry["job_id"], timeout=60)
        assert job["status"] == "cancelled", job
    shown = stack.get(f"/v1/sweeps/{sweep['id']}").json()
    assert shown["counts"]["cancelled"] == 2 and shown["counts"]["waiting"] == 2
    assert stack.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 409
