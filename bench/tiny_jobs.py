"""Tiny jobs per second per worker process: how fast the queue hands over work (issue 12).

    python -m bench.tiny_jobs                       # both backends, 160 jobs each
    python -m bench.tiny_jobs --backend embedded --jobs 40

Starts the service as `make run` does (API, one `backprop worker`, the dispatcher) on a throwaway
database, per backend: "embedded" (SQLite + kombu's SQL transport, the default) and "postgres"
(PostgreSQL + Redis db 15). Submits ``--jobs`` XOR jobs of 5 epochs (milliseconds of training
each) as fast as it can, waits for the last, and reports jobs per second from the first job's
creation to the last one's end (server timestamps), the median time from a job's creation to its
start while the worker is idle (one job at a time, after the burst), and the training time.
"""

import argparse
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from bench.service import Client
from bench.serving import running_service, say

REDIS_URL = "redis://127.0.0.1:6379/15"  # tests use 1 to 9, bench.service 12, serving 14
BACKEND_OPTIONS = {"embedded": {}, "postgres": {"redis_url": REDIS_URL}}
TINY_JOB = {
    "network": {
        "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "softmax"}]
    },
    "training": {"epochs": 5, "batch_size": "full", "seed": 1},
}
FINISHED = {"succeeded", "failed", "cancelled"}


def timestamp(job: dict, field: str) -> float:
    return datetime.fromisoformat(job[field]).timestamp()


def wait_all(client: Client, job_ids: list[int]) -> list[dict]:
    return [client.wait_for(job_id, FINISHED) for job_id in job_ids]


def burst(client: Client, dataset_id: int, n_jobs: int) -> float:
    """Jobs per second: ``n_jobs`` submitted at once, first creation to last end."""
    body = {"dataset_id": dataset_id, **TINY_JOB}
    jobs = wait_all(client, [client.post("/v1/jobs", body)["id"] for _ in range(n_jobs)])
    start = min(timestamp(job, "created_at") for job in jobs)
    end = max(timestamp(job, "finished_at") for job in jobs)
    return n_jobs / (end - start)


def idle_latencies(client: Client, dataset_id: int, n_jobs: int) -> tuple[float, float]:
    """Median seconds from creation to start on an idle worker, and from start to finish."""
    body = {"dataset_id": dataset_id, **TINY_JOB}
    queued, running = [], []
    for _ in range(n_jobs):
        job = client.wait_for(client.post("/v1/jobs", body)["id"], FINISHED)
        queued.append(timestamp(job, "started_at") - timestamp(job, "created_at"))
        running.append(timestamp(job, "finished_at") - timestamp(job, "started_at"))
    return statistics.median(queued), statistics.median(running)


def measure(backend: str, n_jobs: int, folder: Path) -> str:
    with running_service(backend, folder, **BACKEND_OPTIONS[backend]) as (client, _settings):
        dataset_id = client.post("/v1/datasets", {"builtin": "xor"})["id"]
        burst(client, dataset_id, 5)  # the worker's first job loads its imports and the data
        jobs_per_second = burst(client, dataset_id, n_jobs)
        latency, training = idle_latencies(client, dataset_id, 20)
    return (
        f"| {backend} | {n_jobs} | {jobs_per_second:.1f} | {latency * 1000:.0f} ms "
        f"| {training * 1000:.0f} ms |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=[*BACKEND_OPTIONS, "both"], default="both")
    parser.add_argument("--jobs", type=int, default=160)
    args = parser.parse_args(argv)
    backends = list(BACKEND_OPTIONS) if args.backend == "both" else [args.backend]
    rows = []
    for backend in backends:
        say(f"{backend}: {args.jobs} tiny jobs")
        with tempfile.TemporaryDirectory() as folder:
            rows.append(measure(backend, args.jobs, Path(folder)))
    print(
        "| backend | jobs | jobs/s, one worker process | idle: created -> started (median) "
        "| started -> finished (median) |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
