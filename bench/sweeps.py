"""Sweeps on this machine (issue 12): a 16-trial digits sweep on 1 and 2 worker processes, and
ASHA against the full grid on a 27-trial digits sweep.

    python -m bench.sweeps                         # PostgreSQL + Redis db 15, both parts
    python -m bench.sweeps --backend embedded --part workers

Each run starts the service as `make run` does (API, dispatcher, ``--workers`` `backprop worker`
processes) on a throwaway database, each worker process sized to its share of the cores
(OpenBLAS threads = cores / workers).

* workers: the same 16 trials (4 learning rates x 4 widths, 30 epochs) with 1 and then 2 worker
  processes, 2 trials queued at a time per worker. Wall time is the sweep's creation to its
  last trial's end (server timestamps); the queue and bookkeeping overhead per trial is
  (workers x wall time - the trials' epoch seconds) / trials: what a worker slot spends on
  anything but training.
* asha: 27 trials (3 learning rates x 3 widths x 3 L2 weights) of 27 epochs ranked by
  validation loss, once in full and once with ASHA (min_epochs 1, reduction factor 3: rungs at
  epochs 1, 3 and 9), 2 workers, 2 trials at a time; the best validation loss each finds and the
  epochs each trains.
"""

import argparse
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.service import Client
from bench.serving import running_service, say
from bench.tiny_jobs import BACKEND_OPTIONS

CORES = os.cpu_count() or 1
SWEEP_ENDED = {"succeeded", "failed", "cancelled"}
DIGITS_NETWORK = {
    "layers": [{"units": 32, "activation": "relu"}, {"units": 10, "activation": "softmax"}],
}


def sweep_body(dataset_id: int, epochs: int, parameters: dict, **changes) -> dict:
    return {
        "dataset_id": dataset_id,
        "network": DIGITS_NETWORK,
        "training": {
            "epochs": epochs,
            "batch_size": 32,
            "seed": 1,
            "validation_split": 0.2,
            "optimizer": {"name": "adam", "learning_rate": 0.001},
        },
        "search": {"method": "grid", "parameters": parameters},
        "metric": "val_loss",
        **changes,
    }


WORKERS_GRID = {
    "training.optimizer.learning_rate": [0.0003, 0.001, 0.003, 0.01],
    "network.layers[0].units": [16, 32, 64, 128],
}
ASHA_GRID = {
    "training.optimizer.learning_rate": [0.0003, 0.003, 0.03],
    "network.layers[0].units": [16, 64, 256],
    "training.l2": [0.0, 0.001, 0.01],
}
ASHA = {"method": "asha", "min_epochs": 1, "reduction_factor": 3}


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def run_sweep(client: Client, body: dict) -> tuple[dict, list[dict]]:
    """Create the sweep, wait for its end; the sweep and its trials' jobs."""
    sweep = client.post("/v1/sweeps", body)
    while (sweep := client.get(f"/v1/sweeps/{sweep['id']}"))["status"] not in SWEEP_ENDED:
        time.sleep(0.2)
    jobs = [client.get(f"/v1/jobs/{entry['job_id']}") for entry in sweep["leaderboard"]]
    return sweep, jobs


def stack_env(workers: int) -> dict[str, str]:
    threads = str(max(1, CORES // workers))
    return {"OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "LOG_LEVEL": "WARNING"}


def with_stack(backend: str, workers: int, measure):
    with (
        tempfile.TemporaryDirectory() as folder,
        running_service(
            backend, Path(folder), stack_env(workers), workers, **BACKEND_OPTIONS[backend]
        ) as (client, _settings),
    ):
        dataset_id = client.post("/v1/datasets", {"builtin": "digits"})["id"]
        return measure(client, dataset_id)


def measure_workers(backend: str, workers: int) -> dict:
    def measure(client: Client, dataset_id: int) -> dict:
        body = sweep_body(dataset_id, 30, WORKERS_GRID, max_parallel=2 * workers)
        run_sweep(
            client,
            {
                **body,
                "search": {**body["search"], "parameters": {"network.layers[0].units": [16, 32]}},
            },
        )  # warm: imports, data set cache
        sweep, jobs = run_sweep(client, body)
        wall = max(timestamp(job["finished_at"]) for job in jobs) - timestamp(sweep["created_at"])
        training = sum(entry["seconds"] for entry in sweep["leaderboard"])
        overhead = (workers * wall - training) / len(jobs)
        return {"workers": workers, "wall": wall, "training": training, "overhead": overhead}

    return with_stack(backend, workers, measure)


def measure_asha(backend: str) -> dict:
    def measure(client: Client, dataset_id: int) -> dict:
        results = {}
        for label, early in (("full grid", None), ("ASHA", ASHA)):
            body = sweep_body(dataset_id, 27, ASHA_GRID, max_parallel=2, early_termination=early)
            started = time.perf_counter()
            sweep, jobs = run_sweep(client, body)
            best = min(e["metric"] for e in sweep["leaderboard"] if e["status"] == "succeeded")
            results[label] = {
                "best": best,
                "epochs": sum(job["epoch"] for job in jobs),
                "wall": time.perf_counter() - started,
                "pruned": sweep["counts"]["pruned"],
                "best_params": sweep["leaderboard"][0]["params"],
            }
        return results

    return with_stack(backend, 2, measure)


def report_workers(rows: list[dict], backend: str) -> list[str]:
    one = rows[0]["wall"]
    lines = [
        f"16-trial digits sweep ({backend}), 30 epochs a trial:",
        "",
        "| worker processes | wall time | x one worker | trials' training seconds "
        "| overhead per trial |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['workers']} | {row['wall']:.2f} s | {row['wall'] / one:.2f}x "
            f"| {row['training']:.2f} s | {row['overhead']:.3f} s |"
        )
    return lines


def report_asha(results: dict, backend: str) -> list[str]:
    full = results["full grid"]
    lines = [
        f"27-trial digits sweep ({backend}), 27 epochs, val_loss, 2 workers:",
        "",
        "| search | best val_loss | x full grid | epochs trained | share of full grid "
        "| pruned | wall time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, row in results.items():
        lines.append(
            f"| {label} | {row['best']:.4f} | {row['best'] / full['best']:.3f}x "
            f"| {row['epochs']} | {row['epochs'] / full['epochs']:.0%} | {row['pruned']} "
            f"| {row['wall']:.1f} s |"
        )
    lines.append("")
    lines += [f"best trial, {label}: {row['best_params']}" for label, row in results.items()]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=list(BACKEND_OPTIONS), default="postgres")
    parser.add_argument("--part", choices=["workers", "asha", "both"], default="both")
    args = parser.parse_args(argv)
    lines: list[str] = []
    if args.part in ("workers", "both"):
        rows = []
        for workers in (1, 2):
            say(f"{args.backend}: 16 trials on {workers} worker processes")
            rows.append(measure_workers(args.backend, workers))
        lines += report_workers(rows, args.backend) + [""]
    if args.part in ("asha", "both"):
        say(f"{args.backend}: 27 trials, full grid then ASHA")
        lines += report_asha(measure_asha(args.backend), args.backend)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
