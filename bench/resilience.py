"""What checkpoints and lease heartbeats cost a training job, on the 60,000-row workload.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/backprop_bench python -m bench.resilience

Runs the worker's own ``run_training`` in this process (no API, no broker: only the training
loop and its database writes are measured) on workload b of the engine benchmark (60,000 x 784
-> 256 -> 128 -> 10, batch 64) for ``--epochs`` epochs, under three settings, alternating them
round by round so that all see the same machine, best of ``--repeats``:

* none: no checkpoint and no heartbeat (the epoch flushes only);
* defaults: a checkpoint every 10 epochs or 30 s, a heartbeat every 3 s (Settings' defaults);
* every epoch: a checkpoint after every epoch and a heartbeat every 0.5 s (the worst case).

The job's time is the attempt's wall time (claim to final write, the data set already cached).
"""

import argparse
import statistics
import time

from alembic import command

from bench.service import as_json, store_dataset
from bench.workloads import model_core_specs, synthetic_workloads
from model_core import Trainer
from service.cli import alembic_config, prepare
from service.db import queries
from service.db.models import TrainingJob
from service.db.session import make_session_factory
from service.settings import Settings
from worker.training import arrays_cache, run_training

NEVER = 10**9


def configurations(base: Settings) -> dict[str, Settings]:
    def variant(**values) -> Settings:
        return Settings(**{**base.__dict__, **values})

    return {
        "none": variant(
            checkpoint_every_epochs=NEVER, checkpoint_every_seconds=NEVER, heartbeat_seconds=NEVER
        ),
        "defaults": variant(),
        "every epoch": variant(checkpoint_every_epochs=1, heartbeat_seconds=0.5),
    }


def new_job(sessions, dataset_id: int, network: dict, training: dict) -> int:
    weights = network.pop("initial_weights")
    with sessions() as session:
        job = TrainingJob(
            dataset_id=dataset_id,
            network=network,
            initial_weights=weights,
            training=training,
            epochs=training["epochs"],
        )
        return queries.add(session, job).id


def checkpoint_cost(workload) -> tuple[int, float]:
    """Bytes of one checkpoint of the workload and seconds ``Trainer.checkpoint()`` takes."""
    network, training = model_core_specs(workload)
    trainer = Trainer(workload.X, workload.y, network, training)
    start = time.perf_counter()
    size = len(trainer.checkpoint())
    return size, time.perf_counter() - start


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = prepare(Settings.from_env())
    command.upgrade(alembic_config(settings), "head")
    sessions = make_session_factory(settings.database_url)
    workload = synthetic_workloads(args.rows, epochs=args.epochs)[0]
    dataset_id = store_dataset(settings, workload)
    network, training = as_json(workload)
    cache = arrays_cache(settings.dataset_cache_bytes)
    configs = configurations(settings)
    run_training(sessions, new_job(sessions, dataset_id, dict(network), training), cache=cache)
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, config in configs.items():
            job_id = new_job(sessions, dataset_id, dict(network), training)
            start = time.perf_counter()
            run_training(sessions, job_id, config, cache)
            times[name].append(time.perf_counter() - start)
    size, seconds = checkpoint_cost(workload)
    print(f"{workload.title}, {args.epochs} epochs, {settings.database_url.split(':')[0]}")
    print(f"one checkpoint: {size / 1e6:.1f} MB, Trainer.checkpoint() {seconds * 1000:.0f} ms\n")
    print("| checkpoints and heartbeats | best | median | cost over none (best) |")
    print("| --- | ---: | ---: | ---: |")
    best_none = min(times["none"])
    for name, seconds in times.items():
        cost = (min(seconds) / best_none - 1) * 100
        print(
            f"| {name} | {min(seconds):.2f} s | {statistics.median(seconds):.2f} s | {cost:+.1f}% |"
        )


if __name__ == "__main__":
    main()
