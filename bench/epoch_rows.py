"""How many epoch records a second the database takes from the workers' flushes (issue 12,
docs/scaling.md): the ceiling on trials that can run at once.

    python -m bench.epoch_rows                     # PostgreSQL 127.0.0.1:5432 (a throwaway db)
    python -m bench.epoch_rows --database sqlite

``--writers`` processes each play a running trial: they call the worker's own
``attempts.record_progress`` (insert the batch, move the job's latest figures, read back its
cancel flag, commit) in a loop for ``--seconds``, with ``--batch`` epoch records per flush
(a worker flushes every METRICS_FLUSH_SECONDS, 0.5 s, all the epochs finished since). Reports
flushes (transactions) and epoch records per second, summed over the writers.
"""

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import psycopg

from service.db import attempts
from service.db.migrate import upgrade
from service.db.models import TrainingJob
from service.db.session import make_session_factory
from service.settings import Settings
from service.vocabulary import JobStatus

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
            records.append(
                {
                    "epoch": epoch,
                    "train_loss": 0.5,
                    "val_loss": 0.6,
                    "train_accuracy": 0.9,
                    "val_accuracy": 0.8,
                    "seconds": 0.01,
                }
            )
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 25])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
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
