"""What checkpoints and lease heartbeats cost a training job, on the 60,000-row workload.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/backprop_bench python -m bench.resilience

Runs the worker's own ``run_training`` in this process (no API, no broker: only the training
loop and its database writes are measured) on workload b of the engine benchmark (60,000 x 784
-> 256 -> 128 -> 10, batch 64) for ``--epochs`` epochs, under three settings, alternating them
round by round so that all see the same machine, best of ``--repeats``:

* none: no checkpoint and no heartbeat (the epoch flushes only);
* defaults: a checkpoint every 10 epochs or 30 s, a heartbeat every 3 s (Settings' defaults);
* every epoch: a checkpoint after every epoch and a heartbeat every 0.5 s (the worst case).

Machine noise (other processes on two cores move epoch times by tens of percent) would swamp a
few percent between runs, so each run is measured against itself: its epochs' own seconds
(what model_core spends training) and the rest of the attempt's wall time (claim, flushes,
checkpoints, heartbeats, the final write; the data set is already cached). The cost of a
setting is the rest's growth over "none", as a share of the epochs' seconds.
"""

import argparse
import statistics
import time
from dataclasses import dataclass

from bench.service import as_json, store_dataset
from bench.workloads import model_core_specs, synthetic_workloads
from model_core import Trainer
from service.db import records
from service.db.migrate import upgrade
from service.db.models import TrainingJob
from service.db.session import make_session_factory
from service.settings import Settings, create_sqlite_folders
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
        return records.add(session, job).id


def checkpoint_cost(workload) -> tuple[int, float]:
    """Bytes of one checkpoint of the workload and seconds ``Trainer.checkpoint()`` takes."""
    network, training = model_core_specs(workload)
    trainer = Trainer(workload.X, workload.y, network, training)
    start = time.perf_counter()
    size = len(trainer.checkpoint())
    return size, time.perf_counter() - start


@dataclass(frozen=True)
class Run:
    epoch_seconds: float
    wall_seconds: float

    @property
    def rest(self) -> float:
        """Wall time not spent in epochs: database writes, checkpoints, heartbeats."""
        return self.wall_seconds - self.epoch_seconds


def timed_run(sessions, config: Settings, cache, dataset_id: int, network, training) -> Run:
    job_id = new_job(sessions, dataset_id, dict(network), training)
    start = time.perf_counter()
    run_training(sessions, job_id, config, cache)
    wall = time.perf_counter() - start
    with sessions() as session:
        epochs = records.list_epochs(session, job_id, after=0, limit=10**6)
    return Run(sum(epoch.seconds for epoch in epochs), wall)


def report(runs: dict[str, list[Run]]) -> str:
    lines = [
        "| checkpoints and heartbeats | epochs (median) | rest of the attempt (median) "
        "| cost over none (median, min..max) |",
        "| --- | ---: | ---: | ---: |",
    ]
    rest_none = statistics.median(run.rest for run in runs["none"])
    for name, measured in runs.items():
        costs = [(run.rest - rest_none) / run.epoch_seconds * 100 for run in measured]
        lines.append(
            f"| {name} | {statistics.median(r.epoch_seconds for r in measured):.2f} s "
            f"| {statistics.median(r.rest for r in measured):.3f} s "
            f"| {statistics.median(costs):+.2f}% ({min(costs):+.2f}..{max(costs):+.2f}) |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = create_sqlite_folders(Settings.from_env())
    upgrade(settings)
    sessions = make_session_factory(settings.database_url)
    workload = synthetic_workloads(args.rows, epochs=args.epochs)[0]
    dataset_id = store_dataset(settings, workload)
    network, training = as_json(workload)
    cache = arrays_cache(settings.dataset_cache_bytes)
    configs = configurations(settings)
    run_training(sessions, new_job(sessions, dataset_id, dict(network), training), cache=cache)
    runs: dict[str, list[Run]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, config in configs.items():
            runs[name].append(timed_run(sessions, config, cache, dataset_id, network, training))
    size, seconds = checkpoint_cost(workload)
    print(f"{workload.title}, {args.epochs} epochs, {settings.database_url.split(':')[0]}")
    print(f"one checkpoint: {size / 1e6:.1f} MB, Trainer.checkpoint() {seconds * 1000:.0f} ms\n")
    print(report(runs))


if __name__ == "__main__":
    main()
