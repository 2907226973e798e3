"""How many epoch records a second the database takes from the workers' flushes (issue 12,
docs/scaling.md), and how large a training fleet it feeds (issue 27).

    python -m bench.epoch_rows                     # PostgreSQL 127.0.0.1:5432 (a throwaway db)
    python -m bench.epoch_rows --database sqlite
    python -m bench.epoch_rows --fleet --before /tmp/before [--jobs 100 300 1000 3000]

``--writers`` processes each play a running trial: they call the worker's own
``attempts.record_progress`` (insert the batch, move the job's latest figures, read back its
cancel flag, commit) in a loop for ``--seconds``, with ``--batch`` epoch records per flush
(a worker flushes every METRICS_FLUSH_SECONDS, 0.5 s, all the epochs finished since). Reports
flushes (transactions) and epoch records per second, summed over the writers.

``--fleet`` plays ``--jobs`` running attempts at once in ``--processes`` processes, sharing
``--connections`` connections (the server side of a pooler such as PgBouncer: 16, a few per
core, serve this 2-core machine better than PostgreSQL's 100) to a PostgreSQL server of the
bench's own (stock durability: fsync and synchronous_commit on). Each attempt runs the worker's
own ``EpochRecorder`` and ``Heartbeat`` (worker/recorder.py, worker/lease.py) of the tree
measured: an event loop plays its epochs (one every ``--epoch-seconds``, 0.5 s: one record per
flush, the database's worst case) with a checkpoint of 8 KB every 10 epochs, a pool of threads
runs the epochs that flush, and each heartbeat is a thread, as in the worker. The old code
(``--before``, a checkout: ``git worktree add /tmp/before <commit>``) and this one run in turn
for each fleet size. Reported: flushes/s offered (one per attempt every METRICS_FLUSH_SECONDS,
0.5 s) and achieved, flushes that failed, p50/p99 flush latency (from the start of the epoch
that flushes to the recorder's return: waiting for a connection included), heartbeats that
came late (a lease left unrenewed for over the heartbeat interval plus 1 s), leases lost, the
bench's own CPU per flush (simulation and client), how late the event loop played epochs
(median: when it lags, the bench is what limits the flushes offered, not the database) and
the machine's load average. The first 3 s are warm-up.
"""

import argparse
import heapq
import inspect
import itertools
import json
import multiprocessing
import os
import queue
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
from sqlalchemy import QueuePool, text

from service.db import attempts
from service.db.migrate import upgrade
from service.db.models import TrainingJob, utcnow
from service.db.session import make_session_factory
from service.settings import Settings
from service.vocabulary import JobStatus
from worker.lease import Heartbeat
from worker.recorder import EpochRecorder, RecordingPolicy

REPO = Path(__file__).resolve().parents[1]
PRODUCTION_DURABILITY = "fsync = on\nsynchronous_commit = on\n"
RECORD = {
    "train_loss": 0.5,
    "val_loss": 0.6,
    "train_accuracy": 0.9,
    "val_accuracy": 0.8,
    "learning_rate": 0.01,
    "seconds": 0.01,
}
POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
NAME = "backprop_bench_epoch_rows"


def running_job(database_url: str) -> int:
    sessions = make_session_factory(database_url)
    with sessions() as session:
        job = TrainingJob(
            network={}, training={}, epochs=10**9, status=JobStatus.RUNNING, attempt=1
        )
        session.add(job)
        session.commit()
        return job.id


def write(database_url: str, job_id: int, batch: int, seconds: float) -> int:
    """Flush batches of ``batch`` records for ``seconds``; return how many flushes."""
    sessions = make_session_factory(database_url)
    epoch, flushes = 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        records = []
        for _ in range(batch):
            epoch += 1
            records.append({**RECORD, "epoch": epoch})
        with sessions() as session:
            attempts.record_progress(session, job_id, 1, records)
        flushes += 1
    return flushes


def measure(database_url: str, writers: int, batch: int, seconds: float) -> tuple[float, float]:
    jobs = [running_job(database_url) for _ in range(writers)]
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        flushes = pool.starmap(write, [(database_url, job, batch, seconds) for job in jobs])
    total = sum(flushes)
    return total / seconds, total * batch / seconds


# The fleet mode (issue 27): N simulated running attempts in a few processes.

FLEET_JOBS = (100, 300, 1000, 3000)
WARM_UP_SECONDS = 3.0
# This file run in a tree's folder: its imports find that tree's code (python path/to/this.py
# would find bench/service.py as ``service``).
RUN_IN_TREE = (
    "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], None, '__main__')"
)
CHECKPOINT_EVERY_EPOCHS = 10  # Settings' default


@dataclass(frozen=True)
class Fleet:
    """What each simulated attempt does: an epoch every ``epoch_seconds`` (training time, so the
    next epoch starts that long after the recorder returns), a checkpoint of ``checkpoint_bytes``
    every ``CHECKPOINT_EVERY_EPOCHS`` epochs, flushes every ``flush_seconds`` and a lease of
    ``lease_seconds`` renewed every ``heartbeat_seconds``, as the worker's defaults say."""

    seconds: float = 20.0
    epoch_seconds: float = 0.5
    checkpoint_bytes: int = 8192
    flush_seconds: float = 0.5
    lease_seconds: float = 15.0
    heartbeat_seconds: float = 3.0


def fleet_sessions(url: str, connections: int):
    """The tree's sessions (as its worker makes them), on a pool of at most ``connections``:
    the server connections of a pooler (PgBouncer) that a whole fleet of workers shares."""
    parameters = inspect.signature(make_session_factory).parameters
    extra = {"pre_ping": False} if "pre_ping" in parameters else {}
    sessions = make_session_factory(url, **extra)
    engine = sessions.kw["bind"]
    engine.pool = QueuePool(
        engine.pool._creator,
        pool_size=connections,
        max_overflow=0,
        timeout=600,
        pre_ping=engine.pool._pre_ping,
        dialect=engine.pool._dialect,
        _dispatch=engine.pool.dispatch,
    )
    return sessions


class FleetStats:
    """What the attempts of one process saw: flush latencies, renewals of each lease."""

    def __init__(self, measured_from: float):
        self.measured_from = measured_from
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        # How late the event loop played each epoch: the bench's own limit, not the database's.
        self.lags: list[float] = []
        self.failed = 0
        self.renewals: dict[int, list[float]] = {}
        self.lost = 0

    def flushed(self, started: float, ended: float, ok: bool) -> None:
        if started >= self.measured_from:
            with self.lock:
                self.latencies.append(ended - started)
                self.failed += not ok

    def renewed(self, job_id: int) -> None:
        self.renewals.setdefault(job_id, []).append(time.monotonic())


@dataclass
class SimulatedAttempt:
    """A running attempt: the worker's own recorder and heartbeat, fed made-up epochs."""

    job_id: int
    recorder: EpochRecorder
    heartbeat: Heartbeat
    flushes_renew_lease: bool
    epoch: int = 0

    def flush_due(self) -> bool:
        """Whether the recorder flushes at the next epoch (the old code's interval is fixed)."""
        interval = getattr(self.recorder, "flush_seconds", self.recorder.policy.flush_seconds)
        return self.recorder.clock() - self.recorder.flushed_at >= interval

    def next_epoch(self) -> None:
        self.epoch += 1
        self.recorder({**RECORD, "epoch": self.epoch})


def simulated_attempt(sessions, job_id: int, fleet: Fleet) -> SimulatedAttempt:
    # Trees before the operations' heartbeat (issue 25) built a job's heartbeat directly.
    of_job = getattr(Heartbeat, "of_job", Heartbeat)
    heartbeat = of_job(sessions, job_id, 1, fleet.lease_seconds, fleet.heartbeat_seconds)
    lease = {"lease": heartbeat} if hasattr(attempts, "EpochRecords") else {}
    policy = RecordingPolicy(fleet.flush_seconds, CHECKPOINT_EVERY_EPOCHS, 30.0, 10**9)
    recorder = EpochRecorder(sessions, job_id, 1, policy, heartbeat.lost, **lease)
    blob = secrets.token_bytes(fleet.checkpoint_bytes)
    recorder.snapshot = lambda: blob
    return SimulatedAttempt(job_id, recorder, heartbeat, bool(lease))


def run_fleet_process(config: dict) -> dict:
    """A process of the fleet: an event loop plays the epochs of the attempts of
    ``config["jobs"]`` (each ``epoch_seconds`` after the attempt's previous one returned), and
    hands an epoch that flushes to a pool of as many threads as connections (a training thread
    blocks on its flush, so its next epoch waits for it); each heartbeat is a thread of its own,
    as in the worker. Returns what the attempts saw (JSON-able)."""
    fleet = Fleet(**config["fleet"])
    sessions = fleet_sessions(config["url"], config["connections"])
    start = time.monotonic()
    stats = FleetStats(start + WARM_UP_SECONDS)
    renew_lease = attempts.renew_lease

    def counted_renewal(session, job_id, *args):
        renew_lease(session, job_id, *args)
        stats.renewed(job_id)

    attempts.renew_lease = counted_renewal
    deadline = start + WARM_UP_SECONDS + fleet.seconds
    fleet_attempts = [simulated_attempt(sessions, job, fleet) for job in config["jobs"]]
    events = [
        (start + random.uniform(0, fleet.flush_seconds), index)
        for index in range(len(fleet_attempts))
    ]
    heapq.heapify(events)
    finished: queue.SimpleQueue[tuple[float, int]] = queue.SimpleQueue()

    def flush(index: int, started: float) -> None:
        attempt = fleet_attempts[index]
        attempt.next_epoch()
        written = not attempt.recorder.pending
        stats.flushed(started, attempt.recorder.flushed_at, ok=written)
        if attempt.flushes_renew_lease and written:
            stats.renewed(attempt.job_id)
        finished.put((time.monotonic() + fleet.epoch_seconds, index))

    for attempt in fleet_attempts:
        stats.renewed(attempt.job_id)
        attempt.heartbeat.__enter__()
    in_flight = 0
    with ThreadPoolExecutor(config["connections"]) as pool:
        while events or in_flight:
            wait = events[0][0] - time.monotonic() if events else 1.0
            try:
                event = finished.get(timeout=wait) if wait > 0 else finished.get_nowait()
            except queue.Empty:
                event = None
            if event is not None:
                in_flight -= 1
                heapq.heappush(events, event)
                continue
            if not events:
                continue
            due, index = heapq.heappop(events)
            attempt, now = fleet_attempts[index], time.monotonic()
            if now >= deadline or attempt.recorder.stop is not None:
                continue
            if due >= stats.measured_from:
                stats.lags.append(now - due)
            if attempt.flush_due():
                in_flight += 1
                pool.submit(flush, index, now)
            else:
                attempt.next_epoch()
                heapq.heappush(events, (time.monotonic() + fleet.epoch_seconds, index))
    for attempt in fleet_attempts:
        attempt.heartbeat.__exit__(None, None, None)
        if attempt.recorder.stop is not None or attempt.heartbeat.lost.is_set():
            stats.lost += 1
    late = sum(
        later - earlier > fleet.heartbeat_seconds + 1
        for times in stats.renewals.values()
        for earlier, later in itertools.pairwise([*times, deadline])
    )
    return {
        "latencies": stats.latencies,
        "lag": statistics.median(stats.lags) if stats.lags else 0.0,
        "failed": stats.failed,
        "late": late,
        "lost": stats.lost,
        "cpu_seconds": time.process_time(),
    }


def fleet_jobs(url: str, count: int) -> list[int]:
    """``count`` jobs running as attempt 1, in a database emptied of the previous run's."""
    sessions = make_session_factory(url)
    with sessions() as session:
        session.execute(text("TRUNCATE training_jobs RESTART IDENTITY CASCADE"))
        jobs = [
            TrainingJob(
                network={},
                training={},
                epochs=10**9,
                status=JobStatus.RUNNING,
                attempt=1,
                lease_expires_at=utcnow() + timedelta(seconds=60),
            )
            for _ in range(count)
        ]
        session.add_all(jobs)
        session.commit()
        ids = [job.id for job in jobs]
    sessions.kw["bind"].dispose()
    return ids


def measure_fleet(tree: Path, url: str, count: int, fleet: Fleet, processes: int, connections: int):
    """Run ``count`` attempts of ``tree``'s code in ``processes`` processes sharing
    ``connections``; return the row of the table."""
    jobs = fleet_jobs(url, count)
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'client'}"}
    children = []
    for index in range(processes):
        config = {
            "url": url,
            "jobs": jobs[index::processes],
            "fleet": asdict(fleet),
            "connections": connections // processes,
        }
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", RUN_IN_TREE, str(Path(__file__)), "--fleet-process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                cwd=tree,
                text=True,
            )
        )
        children[-1].stdin.write(json.dumps(config))
        children[-1].stdin.close()
    results = [json.loads(child.stdout.read()) for child in children]
    if any(child.wait() for child in children):
        raise RuntimeError(f"a fleet process of {tree} failed")
    latencies = sorted(latency for result in results for latency in result["latencies"])
    flushes = max(len(latencies), 1) * (fleet.seconds + WARM_UP_SECONDS) / fleet.seconds
    return {
        "offered": count / fleet.flush_seconds,
        "achieved": len(latencies) / fleet.seconds,
        "failed": sum(result["failed"] for result in results),
        "p50": latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "late": sum(result["late"] for result in results),
        "lost": sum(result["lost"] for result in results),
        "client_ms": 1000 * sum(result["cpu_seconds"] for result in results) / flushes,
        "load": os.getloadavg()[0],
        "lag": max(result["lag"] for result in results),
    }


def fleet_table(rows: list[tuple[int, str, dict]]) -> str:
    lines = [
        "| running attempts | code | offered flushes/s | achieved flushes/s | achieved/offered"
        " | failed flushes | p50 flush ms | p99 flush ms | late heartbeats | leases lost"
        " | bench CPU ms/flush | epochs late by (p50 ms) | load average |",
        "| ---: | --- |" + " ---: |" * 11,
    ]
    for count, code, row in rows:
        lines.append(
            f"| {count:,} | {code} | {row['offered']:,.0f} | {row['achieved']:,.0f}"
            f" | {row['achieved'] / row['offered']:.2f} | {row['failed']}"
            f" | {row['p50'] * 1000:,.1f} | {row['p99'] * 1000:,.1f} | {row['late']}"
            f" | {row['lost']} | {row['client_ms']:.2f} | {row['lag'] * 1000:,.0f}"
            f" | {row['load']:.1f} |"
        )
    return "\n".join(lines)


def run_fleet(args: argparse.Namespace) -> None:
    """Old and new code in turn for each fleet size, on a PostgreSQL server of the bench's own
    with the stock durability settings (fsync, synchronous_commit on; 100 connections)."""
    from tests.integration.servers import postgres_server

    fleet = Fleet(seconds=args.seconds, epoch_seconds=args.epoch_seconds)
    trees = [("after", args.after.resolve())]
    if args.before:
        trees.insert(0, ("before", args.before.resolve()))
    rows = []
    with postgres_server(PRODUCTION_DURABILITY) as server:
        upgrade(Settings(database_url=server.url))
        for count in args.jobs:
            for code, tree in trees:
                row = measure_fleet(
                    tree, server.url, count, fleet, args.processes, args.connections
                )
                rows.append((count, code, row))
                print(fleet_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(fleet_table(rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 25])
    parser.add_argument("--seconds", type=float, help="default: 5 (writers), 20 (fleet)")
    parser.add_argument("--fleet", action="store_true", help="simulate running attempts")
    parser.add_argument("--jobs", type=int, nargs="+", default=list(FLEET_JOBS))
    parser.add_argument("--before", type=Path, help="a checkout of the old code (fleet)")
    parser.add_argument("--after", type=Path, default=REPO, help="the new code (fleet)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--epoch-seconds", type=float, default=Fleet.epoch_seconds)
    parser.add_argument("--fleet-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fleet_process:
        print(json.dumps(run_fleet_process(json.load(sys.stdin))))
        return
    if args.fleet:
        args.seconds = args.seconds or Fleet.seconds
        run_fleet(args)
        return
    args.seconds = args.seconds or 5.0
    with tempfile.TemporaryDirectory() as folder:
        if args.database == "sqlite":
            url = f"sqlite:///{Path(folder) / 'rows.sqlite'}"
        else:
            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{NAME}"')
                admin.execute(f'CREATE DATABASE "{NAME}"')
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{NAME}"
        upgrade(Settings(database_url=url))
        print(f"| {args.database} writers | records per flush | flushes/s | epoch records/s |")
        print("| ---: | ---: | ---: | ---: |")
        for writers in args.writers:
            for batch in args.batch:
                flushes, rows = measure(url, writers, batch, args.seconds)
                print(f"| {writers} | {batch} | {flushes:,.0f} | {rows:,.0f} |", flush=True)
        if args.database == "postgres":
            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{NAME}" WITH (FORCE)')


if __name__ == "__main__":
    main()
