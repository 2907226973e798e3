"""Benchmark of the service: a job through API + worker vs model_core alone, queue latency, predict.

    python -m bench.service              # uses DATABASE_URL / BROKER_URL (default: embedded)
    DATABASE_URL=postgresql://postgres@127.0.0.1/backprop_bench \\
    BROKER_URL=redis://127.0.0.1:6379/12 python -m bench.service

It migrates the database, starts `backprop api`, one `backprop worker` and `backprop dispatcher`
as child processes, and measures:

* job wall time: the worker's started -> finished time of a job (the first job on a data set,
  which reads it from the database, and the best of the next ones, which find it in the
  worker's cache), and the client's POST -> succeeded time, against ``model_core.train`` on
  the same data and specs in this process
  (digits, and the engine benchmark's 60,000 x 784 workload, whose rows are stored straight
  into the database: upload speed is not what is measured);
* queue latency: POST /v1/jobs -> running on an idle worker (server timestamps);
* predict latency: one row per request through `backprop api`, p50/p90/p99.
"""

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import requests

from bench.workloads import Workload, digits_workload, model_core_specs, synthetic_workloads
from model_core import train
from service.commands.supervisor import LocalStack
from service.datasets.ingest import build_dataset
from service.db import records
from service.db.migrate import upgrade
from service.db.session import make_session_factory
from service.settings import Settings, create_sqlite_folders
from service.vocabulary import Task

# Benchmarks measure the service, not its guards: no rate limits, no job quota.
UNLIMITED = {"RATE_LIMIT": "off", "PREDICT_RATE_LIMIT": "off", "QUOTA_JOBS": "0"}

XOR_JOB = {
    "network": {
        "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "softmax"}]
    },
    "training": {"epochs": 1000, "batch_size": "full", "seed": 1},
}


@dataclass(frozen=True)
class JobTiming:
    """Best times of one workload; the worker's first job reads the data set from the database,
    the next ones find it in the worker's cache."""

    workload: str
    engine_seconds: float
    first_job_seconds: float
    next_jobs_seconds: float
    end_to_end_seconds: float


class Client:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()

    def post(self, path: str, body: dict) -> dict:
        response = self.http.post(self.base_url + path, json=body, timeout=600)
        response.raise_for_status()
        return response.json()

    def get(self, path: str) -> dict:
        response = self.http.get(self.base_url + path, timeout=60)
        response.raise_for_status()
        return response.json()

    def wait_for(self, job_id: int, statuses: set[str], poll_seconds: float = 0.02) -> dict:
        while True:
            job = self.get(f"/v1/jobs/{job_id}")
            if job["status"] in statuses:
                return job
            if job["status"] in {"failed", "cancelled"}:
                raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
            time.sleep(poll_seconds)


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def as_json(workload: Workload) -> tuple[dict, dict]:
    """model_core's specs for the workload with the initial weights as plain lists."""
    network, training = model_core_specs(workload)
    weights = [
        {"W": np.asarray(w["W"]).tolist(), "b": np.asarray(w["b"]).tolist()}
        for w in network["initial_weights"]
    ]
    return {**network, "initial_weights": weights}, training


def store_dataset(settings: Settings, workload: Workload) -> int:
    sessions = make_session_factory(settings.database_url)
    with sessions() as session:
        packed = build_dataset(
            name=workload.title,
            task=Task.CLASSIFICATION,
            source="json",
            x=workload.X,
            y=workload.y,
            target_field="targets",
        )
        with packed:
            return records.add_dataset(session, packed.row, packed.npz).id


def time_engine(workload: Workload, network: dict, training: dict) -> float:
    start = time.perf_counter()
    train(workload.X, workload.y, network, training, task="classification")
    return time.perf_counter() - start


def time_job(client: Client, settings: Settings, workload: Workload, repeats: int) -> JobTiming:
    """Best of ``repeats`` for each, alternating engine and service runs so both see the same
    machine (other load on a 2-core machine moves epoch times by tens of percent)."""
    network, training = as_json(workload)
    body = {
        "dataset_id": store_dataset(settings, workload),
        "network": network,
        "training": training,
    }
    engine, worker, end_to_end = [], [], []
    for _ in range(repeats):
        engine.append(time_engine(workload, network, training))
        start = time.perf_counter()
        job = client.wait_for(client.post("/v1/jobs", body)["id"], {"succeeded"}, 0.5)
        end_to_end.append(time.perf_counter() - start)
        worker.append(seconds_between(job["started_at"], job["finished_at"]))
    return JobTiming(workload.title, min(engine), worker[0], min(worker[1:]), min(end_to_end))


def queue_latencies(client: Client, repeats: int) -> list[float]:
    """POST -> running on an idle worker, from the job's own created/started timestamps."""
    dataset_id = client.post("/v1/datasets", {"builtin": "xor"})["id"]
    latencies = []
    for _ in range(repeats):
        job = client.post("/v1/jobs", {"dataset_id": dataset_id, **XOR_JOB})
        job = client.wait_for(job["id"], {"succeeded"})
        latencies.append(seconds_between(job["created_at"], job["started_at"]))
    return latencies


def predict_latencies(client: Client, requests_count: int) -> list[float]:
    """Seconds per single-row predict request, measured by the client (HTTP included)."""
    dataset_id = client.post("/v1/datasets", {"builtin": "digits"})["id"]
    body = {
        "dataset_id": dataset_id,
        "network": {
            "layers": [{"units": 64, "activation": "relu"}, {"units": 10, "activation": "softmax"}]
        },
        "training": {"epochs": 5, "seed": 1},
    }
    job = client.wait_for(client.post("/v1/jobs", body)["id"], {"succeeded"})
    path = f"/v1/models/{job['model_id']}/predict"
    row = {"instances": [[8.0] * 64]}
    for _ in range(20):
        client.post(path, row)
    latencies = []
    for _ in range(requests_count):
        start = time.perf_counter()
        client.post(path, row)
        latencies.append(time.perf_counter() - start)
    return latencies


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def report(timings: list[JobTiming], queue: list[float], predict: list[float], broker: str) -> str:
    lines = [
        "| job | model_core alone | worker, first job | worker, next jobs | ratio first / next "
        "| POST -> succeeded |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in timings:
        first, following = (
            t.first_job_seconds / t.engine_seconds,
            t.next_jobs_seconds / t.engine_seconds,
        )
        lines.append(
            f"| {t.workload} | {t.engine_seconds:.2f} s | {t.first_job_seconds:.2f} s | "
            f"{t.next_jobs_seconds:.2f} s | {first:.2f}x / {following:.2f}x | "
            f"{t.end_to_end_seconds:.2f} s |"
        )
    p50, p90, p99 = (percentile(predict, q) * 1000 for q in (50, 90, 99))
    lines += [
        "",
        f"POST /v1/jobs -> running on an idle worker ({broker}), {len(queue)} jobs: "
        f"median {statistics.median(queue) * 1000:.0f} ms, max {max(queue) * 1000:.0f} ms",
        "",
        f"single-row predict through backprop api, {len(predict)} requests: "
        f"p50 {p50:.2f} ms, p90 {p90:.2f} ms, p99 {p99:.2f} ms",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--port", type=int, default=8765)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = create_sqlite_folders(Settings.from_env())
    upgrade(settings)
    rows, digits_epochs, job_repeats, queue_repeats, predicts = (
        (8_000, 5, 2, 3, 100) if args.quick else (60_000, 20, 4, 10, 1000)
    )
    workloads = [digits_workload(digits_epochs), synthetic_workloads(rows, epochs=2)[0]]
    env = {
        **os.environ,
        "PORT": str(args.port),
        "DATABASE_URL": settings.database_url,
        "BROKER_URL": settings.broker_url,
        **UNLIMITED,
    }
    base_url = f"http://127.0.0.1:{args.port}"
    with LocalStack(env, workers=1) as stack:
        stack.wait_until_ready(base_url)
        client = Client(base_url)
        timings = [time_job(client, settings, w, job_repeats) for w in workloads]
        queue = queue_latencies(client, queue_repeats)
        predict = predict_latencies(client, predicts)
    broker = settings.broker_url.split("://")[0]
    print(report(timings, queue, predict, broker))


if __name__ == "__main__":
    main()
