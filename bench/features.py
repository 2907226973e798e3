"""What every production feature costs a prediction (issue 29's targets): a single-row ``/v1``
predict on the digits model (64-64-10) with every feature on, against the same server with
every feature off, under wrk, on both backends.

    python -m bench.features [--rounds 3] [--seconds 8] [--databases embedded postgres]
                             [--mlflow-venv var/mlflow-venv]          # make bench-features

Every feature on (``ON``):

* ``AUTH=required`` and a write key made with the storage layer (as ``backprop keys create``),
  sent by wrk as ``Authorization: Bearer ...``;
* both rate limits at their defaults (``RATE_LIMIT``, ``PREDICT_RATE_LIMIT``: every request is
  counted, none is refused at this pace; a refusal would show as an error);
* the prediction log on; after the rounds the report checks ``/metrics``'s dropped-rows counter
  and the rows written against the requests answered;
* the digits model trained twice and ``bench-digits@production`` split 90/10 between the two
  versions (a canary), the requests sent to ``bench-digits@production``;
* gunicorn's access log on (``ACCESS_LOG=-``: into the API's log file).

Every feature off (``OFF``): ``AUTH=off``, ``RATE_LIMIT=off``, ``PREDICT_RATE_LIMIT=off``,
``PREDICTION_LOG=off``, ``ACCESS_LOG=off``, one training and ``bench-digits@production`` on its
one version.

Per backend both stacks are started side by side (bench/serving.py's ``running_service``: the API
under gunicorn with its 2 processes, a worker and the dispatcher, as ``make run`` starts them),
on SQLite and the embedded broker, or on PostgreSQL 127.0.0.1:5432 and Redis (dbs 10 and 11,
flushed), and stay up through the rounds; each round runs ON then OFF (interleaved, so that a
noisy machine weighs on both alike): a warm-up at 16 connections, then wrk (one thread,
bench/wrk/post.lua) at 1 and 16 connections. The report gives the median of the rounds and each
target per round: "met" when every round met it, "not met" when none did, "noisy" otherwise.

With MLflow's venv present (bench/serving.py ``--setup-mlflow`` makes it), the first backend's
OFF stack also gives the digits weights to MLflow's scoring server, measured after the rounds
(``-w 1`` and ``-w 2``, bench/serving.py's functions) for the ">= 3x MLflow's best at 16
connections" target; without it that target is reported as skipped.
"""

import argparse
import os
import secrets
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.service import Client
from bench.serving import (
    CONNECTIONS,
    REPO,
    BenchModel,
    LoadRow,
    Request,
    WrkResult,
    best_mlflow,
    machine,
    measure_mlflow,
    one_row_bodies,
    our_probabilities,
    probe,
    require_wrk,
    run_wrk,
    running_service,
    save_peer,
    say,
    train_digits,
    work_folder,
)
from service.db import keys
from service.db.predictions import count_since
from service.db.session import make_session_factory
from service.settings import Settings
from service.vocabulary import Scope

METRICS_TOKEN = secrets.token_urlsafe(16)
FEATURES = {
    "on": {
        "AUTH": "required",
        "RATE_LIMIT": Settings.rate_limit,
        "PREDICT_RATE_LIMIT": Settings.predict_rate_limit,
        "PREDICTION_LOG": "on",
        "ACCESS_LOG": "-",
        "METRICS_TOKEN": METRICS_TOKEN,
    },
    "off": {
        "AUTH": "off",
        "RATE_LIMIT": "off",
        "PREDICT_RATE_LIMIT": "off",
        "PREDICTION_LOG": "off",
        "ACCESS_LOG": "off",
    },
}
# Per backend and features: what running_service passes to the database's context manager.
DATABASE_OPTIONS = {
    "embedded": {"on": {}, "off": {}},
    "postgres": {
        "on": {"redis_url": "redis://127.0.0.1:6379/10", "label": "features_on"},
        "off": {"redis_url": "redis://127.0.0.1:6379/11", "label": "features_off"},
    },
}
CANARY = [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]
# Longer than PREDICTION_LOG_FLUSH_SECONDS (1): every process's buffer has been written.
SETTLE_SECONDS = 3.0
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class Stack:
    """One running stack, trained and ready: what wrk sends it, what it answered."""

    features: str
    client: Client
    settings: Settings
    model: BenchModel
    request: Request
    model_ids: list[int]
    results: dict[int, list[WrkResult]] = field(default_factory=dict)
    answered: int = 1  # the probe's

    def load(self, warmup: int, seconds: int, folder: Path) -> None:
        say(f"wrk: features {self.features}")
        if warmup > 0:
            self.answered += run_wrk(self.request, max(CONNECTIONS), warmup, folder).requests
        for connections in CONNECTIONS:
            result = run_wrk(self.request, connections, seconds, folder)
            self.results.setdefault(connections, []).append(result)
            self.answered += result.requests


def new_key(settings: Settings) -> str:
    """A write key of the default tenant, as ``backprop keys create`` makes it."""
    with make_session_factory(settings.database_url)() as session:
        return keys.create_key(session, "default", Scope.WRITE)[1]


def prepared(features: str, client: Client, settings: Settings) -> Stack:
    """Digits trained and ``bench-digits@production`` set: on one version, or with every
    feature on split 90/10 over two (the key made first: the API needs it from then on)."""
    header = ""
    if features == "on":
        header = f"Authorization: Bearer {new_key(settings)}"
        client.http.headers["Authorization"] = header.partition(": ")[2]
    model = train_digits(client)
    if model.alias is None:
        raise RuntimeError(f"no alias for the digits model: {model.why}")
    model_ids = [model.model_id]
    if features == "on":
        model_ids.append(train_digits(client).model_id)
        client.http.put(
            f"{client.base_url}/v1/models/{model.name}/aliases/production",
            json={"versions": CANARY},
            timeout=60,
        ).raise_for_status()
    url = f"{client.base_url}/v1/models/{model.alias}/predict"
    body = one_row_bodies(model.rows[0])["v1"]
    request = Request("ours", features, url, body, header=header)
    why = probe(request)
    if why:
        raise RuntimeError(why)
    return Stack(features, client, settings, model, request, model_ids)


@contextmanager
def stacks(database: str, folder: Path) -> Iterator[dict[str, Stack]]:
    """Both stacks of one backend, side by side, each in a folder of its own."""
    with ExitStack() as running:
        ready = {}
        for features, changes in FEATURES.items():
            say(f"{database}: starting the stack with every feature {features}")
            own = folder / f"{database}-{features}"
            own.mkdir()
            options = DATABASE_OPTIONS[database][features]
            client, settings = running.enter_context(
                running_service(database, own, changes, **options)
            )
            ready[features] = prepared(features, client, settings)
        yield ready


def dropped_rows(stack: Stack) -> float:
    response = stack.client.http.get(
        f"{stack.client.base_url}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=60,
    )
    response.raise_for_status()
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "backprop_prediction_log_dropped_rows_total"
    )


def logged_rows(stack: Stack) -> list[int]:
    """The rows the prediction log wrote, per version (the canary's two)."""
    with make_session_factory(stack.settings.database_url)() as session:
        return [count_since(session, model_id, LONG_AGO) for model_id in stack.model_ids]


@dataclass
class Backend:
    database: str
    stacks: dict[str, Stack]
    load_averages: list[float]
    dropped: float = 0.0
    logged: list[int] = field(default_factory=list)
    mlflow: list[LoadRow] = field(default_factory=list)
    mlflow_why: str = ""


def measure_mlflow_beside(stack: Stack, args: argparse.Namespace, folder: Path):
    """MLflow's scoring server on the same digits weights (bench/serving.py), or why not."""
    python = args.mlflow_venv / "bin" / "python"
    if not (args.mlflow_venv / "bin" / "mlflow").exists():
        return [], f"skipped: no MLflow venv at {args.mlflow_venv}"
    say(f"saving {stack.model.title} for MLflow")
    peer = save_peer(stack.client, stack.model, python, folder)
    ours = our_probabilities(stack.client, stack.model, stack.model.rows[:1])
    return measure_mlflow(python, peer, stack.model, ours, args, folder), ""


def measure_backend(database: str, args: argparse.Namespace, folder: Path, mlflow: bool):
    with stacks(database, folder) as ready:
        load_averages = []
        for round_number in range(1, args.rounds + 1):
            for stack in ready.values():
                say(f"{database}, round {round_number}")
                load_averages.append(os.getloadavg()[0])
                stack.load(args.warmup, args.seconds, folder)
        load_averages.append(os.getloadavg()[0])
        backend = Backend(database, ready, load_averages)
        time.sleep(SETTLE_SECONDS)
        backend.dropped = dropped_rows(ready["on"])
        backend.logged = logged_rows(ready["on"])
        if mlflow:
            backend.mlflow, backend.mlflow_why = measure_mlflow_beside(ready["off"], args, folder)
        else:
            backend.mlflow_why = "skipped (--no-mlflow)"
        return backend


# --- The report -----------------------------------------------------------------------------


def median(stack: Stack, connections: int, figure: str) -> float:
    return statistics.median(getattr(result, figure) for result in stack.results[connections])


def verdict(per_round: list[bool]) -> str:
    """met in every round, in none, or in some: noisy."""
    if all(per_round):
        return "met"
    if not any(per_round):
        return "**not met**"
    return f"noisy ({sum(per_round)} of {len(per_round)} rounds met)"


def load_table(backends: list[Backend]) -> list[str]:
    lines = [
        "| backend | features | connections | requests/s | p50 ms | p99 ms | errors (all rounds) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend in backends:
        for connections in CONNECTIONS:
            for features, stack in backend.stacks.items():
                results = stack.results[connections]
                errors = sum(result.errors for result in results)
                requests_sent = sum(result.requests for result in results)
                lines.append(
                    f"| {backend.database} | {features.upper()} | {connections} | "
                    f"{median(stack, connections, 'requests_per_second'):,.0f} | "
                    f"{median(stack, connections, 'p50_ms'):.3f} | "
                    f"{median(stack, connections, 'p99_ms'):.2f} | "
                    f"{errors} of {requests_sent:,} |"
                )
        for row in backend.mlflow:
            if row.result is not None:
                lines.append(
                    f"| (beside {backend.database}) | {row.request.server} | "
                    f"{row.connections} | {row.result.requests_per_second:,.0f} | "
                    f"{row.result.p50_ms:.3f} | {row.result.p99_ms:.2f} | "
                    f"{row.result.errors} of {row.result.requests:,} |"
                )
    return lines


def difference_lines(backends: list[Backend]) -> list[str]:
    lines = [
        "| backend | connections | p50 ON - OFF (median of rounds) | per round |",
        "| --- | ---: | ---: | --- |",
    ]
    for backend in backends:
        on, off = backend.stacks["on"], backend.stacks["off"]
        for connections in CONNECTIONS:
            rounds = [
                a.p50_ms - b.p50_ms
                for a, b in zip(on.results[connections], off.results[connections], strict=True)
            ]
            each = ", ".join(f"{value:+.3f}" for value in rounds)
            lines.append(
                f"| {backend.database} | {connections} | {statistics.median(rounds):+.3f} ms "
                f"| {each} |"
            )
    return lines


def target_rows(backend: Backend, peer: tuple[str, WrkResult] | None, why: str) -> list[str]:
    """Each target's verdict for one backend, in the order of TARGETS; ``peer``: MLflow's best
    configuration at 16 connections (measured once, beside the first backend), or None and
    ``why``."""
    on, off = backend.stacks["on"], backend.stacks["off"]
    single = list(zip(on.results[1], off.results[1], strict=True))
    loaded = on.results[max(CONNECTIONS)]
    rise = statistics.median(a.p50_ms - b.p50_ms for a, b in single)
    cells = [
        f"{median(on, 1, 'p50_ms'):.3f} ms, {verdict([a.p50_ms < 1 for a, _ in single])}",
        f"{rise:+.3f} ms, {verdict([a.p50_ms - b.p50_ms <= 0.2 for a, b in single])}",
        f"{median(on, max(CONNECTIONS), 'p99_ms'):.1f} ms, "
        f"{verdict([r.p99_ms < 20 for r in loaded])}",
        f"{sum(r.errors for r in loaded)}, {verdict([r.errors == 0 for r in loaded])}",
    ]
    if peer is None:
        cells.append(why)
    else:
        ratios = [r.requests_per_second / peer[1].requests_per_second for r in loaded]
        cells.append(
            f"{statistics.median(ratios):.2f}x {peer[0]} "
            f"({peer[1].requests_per_second:,.0f}/s), {verdict([x >= 3 for x in ratios])}"
        )
    return cells


TARGETS = [
    "ON, 1 connection: p50 < 1 ms",
    "ON p50 at most 0.2 ms above OFF (1 connection)",
    "ON, 16 connections: p99 < 20 ms",
    "ON, 16 connections: no errors",
    "ON, 16 connections: >= 3x MLflow's best",
]


def targets_table(backends: list[Backend]) -> list[str]:
    lines = [
        "| target | " + " | ".join(b.database for b in backends) + " |",
        "| --- |" + " --- |" * len(backends),
    ]
    first = backends[0]
    peer = best_mlflow(first.mlflow, first.stacks["on"].model.title)
    cells = [target_rows(backend, peer, first.mlflow_why) for backend in backends]
    for index, target in enumerate(TARGETS):
        lines.append(f"| {target} | " + " | ".join(c[index] for c in cells) + " |")
    return lines


def prediction_log_lines(backends: list[Backend]) -> list[str]:
    return [
        f"- {b.database}, prediction log (ON): {b.dropped:.0f} rows dropped (/metrics), "
        f"{sum(b.logged):,} rows written ({' and '.join(f'{n:,}' for n in b.logged)} by the "
        f"canary's versions 1 and 2) for {b.stacks['on'].answered:,} requests wrk saw answered "
        "(a request still in flight when wrk stops is written but not counted by wrk)"
        for b in backends
    ]


def report(backends: list[Backend], args: argparse.Namespace, started: str) -> str:
    loads = [value for b in backends for value in b.load_averages]
    lines = [
        f"{started}, {machine()}; digits 64-64-10, one row per request to "
        f"`/v1/models/bench-digits@production/predict`; wrk -t1, {args.seconds} s runs after a "
        f"{args.warmup} s warm-up at 16 connections; median of {args.rounds} interleaved rounds "
        f"(ON, OFF); load average (1 min) {min(loads):.2f} to {max(loads):.2f} during the run",
        "",
        *load_table(backends),
        "",
        *difference_lines(backends),
        "",
        *targets_table(backends),
        "",
        *prediction_log_lines(backends),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--databases",
        nargs="+",
        choices=sorted(DATABASE_OPTIONS),
        default=["embedded", "postgres"],
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8, help="each wrk run (whole seconds)")
    parser.add_argument("--warmup", type=int, default=2, help="wrk seconds before each round")
    parser.add_argument("--mlflow-venv", type=Path, default=REPO / "var" / "mlflow-venv")
    parser.add_argument("--no-mlflow", action="store_true", help="skip MLflow's server")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    require_wrk()
    started = datetime.now(UTC).strftime("%d %b %Y, %H:%M UTC")
    backends = []
    with work_folder() as folder:
        for index, database in enumerate(args.databases):
            mlflow = index == 0 and not args.no_mlflow
            backends.append(measure_backend(database, args, folder, mlflow))
    print(report(backends, args, started))


if __name__ == "__main__":
    main()
