"""What the prediction log (issue 24) costs a prediction: a single-row ``/v1`` predict with
``PREDICTION_LOG=on`` and ``off``, under wrk, in one run.

    python -m bench.prediction_log [--rounds 3] [--seconds 10]     # make bench-prediction-log

Each round starts a stack of this tree with the log on, then one with it off (interleaved, so
that a noisy machine weighs on both alike), each as ``make run`` does (bench/contracts.py's
``stack_of``: the API under Granian with its 2 processes, a worker, the dispatcher) on a
throwaway SQLite database; trains the digits model (64-64-10) through the API; then wrk (one
thread) sends one row per request to ``/v1/models/digits@production/predict`` at 1 and 16
connections. With the log on it then waits for the buffers to be written and checks that every
answered request left its row: the rows in the database against wrk's count of requests, and
``backprop_prediction_log_dropped_rows_total`` from ``/metrics``. The report gives the median of
the rounds and the issue's two targets: at 16 connections the log on keeps at least 90% of the
requests per second, and at 1 connection its p50 rises by at most 0.1 ms.

    python -m bench.prediction_log --writer-only [--rounds 20] [--requests 400]
        [--databases sqlite postgres] [--busy]

measures instead, in this process, what the log's thread spends per row: flushes of
``--requests`` single-row digits requests (64 inputs, 10 probabilities, the batch a worker writes
each second at 16 connections) to a new SQLite database and a new PostgreSQL one, by the log's
writer (``write_batch``: on SQLite 64 rows to an INSERT, on PostgreSQL a COPY) and by
SQLAlchemy's ``executemany`` as before, taking turns: rows per second and the writing thread's
CPU per row (``time.thread_time``), median of ``--rounds``. The CPU figure depends far less on
the machine's load than wrk's, and it is what the log takes from the API process's CPU, holding
the GIL. ``--busy`` runs a thread of pure Python throughout the flushes, as a busy API worker's
request threads run beside the log's: a release of the GIL by the writer (sqlite3 releases it
around each step of a statement) may then be a hand-over and a wait to take it back, which the
figures show.
"""

import argparse
import contextlib
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert
from sqlalchemy.orm import Session

from bench.contracts import bodies, stack_of, trained_digits
from bench.serving import Request, postgres_database, require_wrk, run_wrk
from service.db.models import Base, PredictionRecord, utcnow
from service.db.predictions import ROW_COLUMNS, SHARED_COLUMNS, write_batch
from service.db.session import make_session_factory
from service.serving.prediction_log import LoggedRequest, new_prediction_id

REPO = Path(__file__).resolve().parents[1]
CONNECTIONS = (1, 16)
SETTINGS = {"on": {"PREDICTION_LOG": "on"}, "off": {"PREDICTION_LOG": "off"}}
# Longer than PREDICTION_LOG_FLUSH_SECONDS (1): every process's buffer has been written.
SETTLE_SECONDS = 3.0
# The Redis db of ad-hoc runs (bench/serving.py's postgres_database flushes it).
REDIS_DB_13 = "redis://127.0.0.1:6379/13"


def say(message: str) -> None:
    print(f"[bench.prediction_log] {message}", file=sys.stderr, flush=True)


def logged_rows(folder: Path) -> int:
    with sqlite3.connect(folder / "backprop.sqlite") as database:
        return database.execute("SELECT count(*) FROM prediction_logs").fetchone()[0]


def dropped_rows(base_url: str) -> float:
    text = requests.get(f"{base_url}/metrics", timeout=60).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "backprop_prediction_log_dropped_rows_total"
    )


def measure(log: str, seconds: int, folder: Path) -> dict:
    """wrk's figures per connections and, with the log on, what it kept and dropped."""
    with stack_of(REPO, folder, SETTINGS[log]) as base_url:
        model = trained_digits(base_url)
        requests.put(
            f"{base_url}/v1/models/digits/aliases/production", json={"version": 1}, timeout=60
        ).raise_for_status()
        url = f"{base_url}/v1/models/digits@production/predict"
        request = Request("ours", "instances", url, bodies(model)["instances"])
        warm_up = run_wrk(request, max(CONNECTIONS), 2, folder)
        results: dict = {n: run_wrk(request, n, seconds, folder) for n in CONNECTIONS}
        results["answered"] = warm_up.requests + sum(results[n].requests for n in CONNECTIONS)
        if log == "on":
            time.sleep(SETTLE_SECONDS)
            results["rows"] = logged_rows(folder)
            results["dropped"] = dropped_rows(base_url)
        return results


def median(results: list[dict], connections: int, figure: str) -> float:
    return statistics.median(getattr(result[connections], figure) for result in results)


def report(on: list[dict], off: list[dict], rounds: int, seconds: int) -> str:
    lines = [
        f"Digits 64-64-10, one row, `/v1/models/digits@production/predict`, wrk -t1, {seconds} s"
        f" per run, median of {rounds} interleaved rounds:",
        "",
        "| connections | log off: req/s | log on: req/s | on/off | log off: p50 ms"
        " | log on: p50 ms | p50 rise ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in CONNECTIONS:
        rate_off, rate_on = (
            median(off, n, "requests_per_second"),
            median(on, n, "requests_per_second"),
        )
        p50_off, p50_on = median(off, n, "p50_ms"), median(on, n, "p50_ms")
        lines.append(
            f"| {n} | {rate_off:.0f} | {rate_on:.0f} | {rate_on / rate_off:.3f} | {p50_off:.3f}"
            f" | {p50_on:.3f} | {p50_on - p50_off:+.3f} |"
        )
    ratio = median(on, 16, "requests_per_second") / median(off, 16, "requests_per_second")
    rise = median(on, 1, "p50_ms") - median(off, 1, "p50_ms")
    dropped = sum(result["dropped"] for result in on)
    missing = [result["answered"] - result["rows"] for result in on]
    lines += [
        "",
        f"- 16 connections: on/off {ratio:.3f} ({'met' if ratio >= 0.9 else 'not met'}: at least"
        " 0.9)",
        f"- 1 connection: p50 rise {rise:+.3f} ms ({'met' if rise <= 0.1 else 'not met'}: at most"
        " 0.1 ms)",
        f"- rows dropped: {dropped:.0f}; requests wrk saw answered less the rows logged, per"
        f" round: {missing}",
    ]
    return "\n".join(lines)


def digits_request(rng: np.random.Generator) -> LoggedRequest:
    probabilities = rng.dirichlet(np.ones(10)).astype(np.float32)[None, :]
    return LoggedRequest(
        prediction_id=new_prediction_id(),
        tenant="default",
        model_id=1,
        model_name="digits",
        model_version=1,
        alias="production",
        split_arm=None,
        x=rng.integers(0, 17, size=(1, 64)).astype(np.float64),
        keep_inputs=True,
        predictions=np.array([int(probabilities.argmax())]),
        probabilities=probabilities,
        latency_ms=0.8,
        created_at=utcnow(),
    )


def sqlalchemy_write(session: Session, taken: list[LoggedRequest]) -> int:
    """The batch insert as it was before the driver's ``executemany``: one dict per row, then
    SQLAlchemy's ``executemany`` with its bind processing (the reference ``--writer-only``
    compares against)."""
    columns = SHARED_COLUMNS + ROW_COLUMNS
    rows = []
    for request in taken:
        log_rows = request.log_rows()
        rows += [
            dict(zip(columns, log_rows.shared + row, strict=True))
            for row in zip(*log_rows.columns, strict=True)
        ]
    session.execute(insert(PredictionRecord.__table__), rows)
    session.commit()
    return len(rows)


def driver_write(session: Session, taken: list[LoggedRequest]) -> int:
    """The batch insert as the log's thread writes it (service/db/predictions.py)."""
    return write_batch(session, [request.log_rows() for request in taken])


WRITERS = {"sqlalchemy": sqlalchemy_write, "driver": driver_write}


class WriteCost(NamedTuple):
    rows_per_second: float
    cpu_us_per_row: float


def write_costs(sessions, requests_count: int, rounds: int) -> dict[str, list[WriteCost]]:
    """Each writer's flushes of ``requests_count`` single-row requests, taking turns round
    after round: rows per second of wall time, and the writing thread's CPU per row."""
    rng = np.random.default_rng(0)
    costs: dict[str, list[WriteCost]] = {name: [] for name in WRITERS}
    for _ in range(rounds):
        for name, write in WRITERS.items():
            taken = [digits_request(rng) for _ in range(requests_count)]
            wall, cpu = time.perf_counter(), time.thread_time()
            with sessions() as session:
                rows = write(session, taken)
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            costs[name].append(WriteCost(rows / wall, cpu / rows * 1e6))
    return costs


def spin_until(done: threading.Event) -> None:
    while not done.is_set():
        pass


@contextmanager
def busy_thread() -> Iterator[None]:
    """A thread running Python (and so wanting the GIL) until the block ends, as a busy
    worker's request threads are while the log's thread writes."""
    done = threading.Event()
    thread = threading.Thread(target=spin_until, args=(done,))
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextmanager
def log_database(database: str, folder: Path) -> Iterator[str]:
    if database == "sqlite":
        yield f"sqlite:///{folder / 'log.sqlite'}"
        return
    with postgres_database(folder, redis_url=REDIS_DB_13, label="logwrite") as urls:
        yield urls["DATABASE_URL"]


def writer_report(
    database: str, costs: dict[str, list[WriteCost]], requests_count: int, busy: bool
) -> str:
    rounds = len(costs["driver"])
    beside = ", beside a busy thread" if busy else ""
    lines = [
        f"{database}: {requests_count} single-row digits requests per flush{beside}, {rounds}"
        " rounds (median; CPU: the writing thread's):",
        "",
        "| writer | rows/s | CPU us per row |",
        "| --- | ---: | ---: |",
    ]
    for name, found in costs.items():
        rate = statistics.median(cost.rows_per_second for cost in found)
        cpu = statistics.median(cost.cpu_us_per_row for cost in found)
        lines.append(f"| {name} | {rate:,.0f} | {cpu:.1f} |")
    return "\n".join(lines)


def compare_writers(databases: list[str], requests_count: int, rounds: int, busy: bool) -> None:
    for database in databases:
        with (
            tempfile.TemporaryDirectory(prefix="bench-prediction-log-") as folder,
            log_database(database, Path(folder)) as url,
        ):
            sessions = make_session_factory(url)
            Base.metadata.create_all(sessions.kw["bind"])
            write_costs(sessions, requests_count, 1)  # warm-up: statements compiled, caches
            with busy_thread() if busy else contextlib.nullcontext():
                costs = write_costs(sessions, requests_count, rounds)
            sessions.kw["bind"].dispose()
            print(writer_report(database, costs, requests_count, busy) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--writer-only", action="store_true", help="the thread's cost per row")
    parser.add_argument("--requests", type=int, default=400, help="--writer-only: per flush")
    parser.add_argument(
        "--databases", nargs="+", choices=("sqlite", "postgres"), default=["sqlite", "postgres"]
    )
    parser.add_argument("--busy", action="store_true", help="--writer-only: beside a busy thread")
    args = parser.parse_args(argv)
    if args.writer_only:
        compare_writers(args.databases, args.requests, args.rounds, args.busy)
        return
    require_wrk()
    on, off = [], []
    for round_number in range(1, args.rounds + 1):
        for log, results in (("on", on), ("off", off)):
            say(f"round {round_number}: log {log}")
            with tempfile.TemporaryDirectory(prefix="bench-prediction-log-") as folder:
                results.append(measure(log, args.seconds, Path(folder)))
    print(report(on, off, args.rounds, args.seconds))


if __name__ == "__main__":
    main()
