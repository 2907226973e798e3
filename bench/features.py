"""What every production feature costs a prediction (issue 29's targets): a single-row ``/v1``
predict on the digits model (64-64-10) with every feature on, against the same server with
every feature off, under wrk, on both backends.

    python -m bench.features [--rounds 3] [--seconds 8] [--databases embedded postgres]
                             [--mlflow-venv var/mlflow-venv]          # make bench-features

Every feature on (``ON``):

* ``AUTH=required`` and a write key made with the storage layer (as ``backprop keys create``),
  sent by wrk as ``Authorization: Bearer ...`` (a request without it must answer 401);
* both rate limits at their defaults (``RATE_LIMIT``, ``PREDICT_RATE_LIMIT``: every request is
  counted, none is refused at this pace; a refusal would show as an error);
* the prediction log on; after the rounds the report checks ``/metrics``'s dropped-rows counter
  and the rows written against the requests answered;
* the digits model trained twice and ``bench-digits@production`` split 90/10 between the two
  versions (a canary), the requests sent to ``bench-digits@production``;
* the access log on (``ACCESS_LOG=-``: into the API's log file; its lines counted).

The ON stack is also loaded at 16 connections through ``/v2/models/bench-digits/infer`` (the
KServe v2 JSON body, the same row and key): the target ``/v2 JSON >= 2x MLflow``.

Every feature off (``OFF``): ``AUTH=off``, ``RATE_LIMIT=off``, ``PREDICT_RATE_LIMIT=off``,
``PREDICTION_LOG=off``, ``ACCESS_LOG=off``, one training and ``bench-digits@production`` on its
one version.

Both stacks of every backend are started side by side (bench/serving.py's ``running_service``:
the API under Granian with its 2 processes, a worker and the dispatcher, as ``make run`` starts
them), on SQLite and the embedded broker, or on PostgreSQL 127.0.0.1:5432 and Redis (dbs 10 and
11, flushed), and stay up through the rounds. Each round loads every backend in turn (the first
one rotating from round to round), and on each runs ON then OFF: interleaved, so that a noisy
machine weighs on both stacks and both backends alike (run one backend after the other, the
PostgreSQL stack once looked 0.3 CPU ms per request dearer than SQLite's; in turn it was level:
docs/benchmarks.md, issue 29). Each load is a warm-up at 16 connections, then wrk (one thread,
bench/wrk/post.lua) at 1 and 16 connections. The report gives the median of the rounds and each
target per round: "met" when every round met it, "not met" when none did, "noisy" otherwise.

With MLflow's venv present (bench/serving.py ``--setup-mlflow`` makes it), the first backend's
OFF stack also gives the digits weights to MLflow's scoring server (bench/serving.py's functions:
the same network as an MLPClassifier, checked against our probabilities), with ``-w 1`` and
``-w 2`` side by side through the rounds, each loaded at 16 connections after that backend's ON
and OFF; the ">= 3x MLflow's best" target compares each round of ours with that round's better
configuration.
Without the venv that target is reported as skipped.
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

import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.service import Client
from bench.serving import (
    CONNECTIONS,
    MLFLOW_WORKERS,
    REPO,
    BenchModel,
    Request,
    WrkResult,
    check_mlflow_answer,
    cpu_cell,
    machine,
    mlflow_server,
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
class Loaded:
    """A request wrk repeats in every round at each of ``connections``, and what it answered."""

    request: Request
    connections: tuple[int, ...] = CONNECTIONS
    results: dict[int, list[WrkResult]] = field(default_factory=dict)
    answered: int = 1  # the probe's

    def load(self, warmup: int, seconds: int, folder: Path) -> None:
        """A warm-up at the most connections, then a run at each; every answer counted."""
        say(f"wrk: {self.request.server}, {self.request.label}")
        if warmup > 0:
            self.answered += run_wrk(self.request, max(self.connections), warmup, folder).requests
        for connections in self.connections:
            result = run_wrk(self.request, connections, seconds, folder)
            self.results.setdefault(connections, []).append(result)
            self.answered += result.requests


@dataclass(kw_only=True)
class Stack(Loaded):
    """One of our stacks, trained and ready."""

    features: str
    client: Client
    settings: Settings
    model: BenchModel
    model_ids: list[int]
    v2: Loaded | None = None  # the same row through /v2 infer (JSON), ON only


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
    request = Request("ours", f"every feature {features}", url, body, header=header)
    why = probe(request)
    if why:
        raise RuntimeError(why)
    v2 = None
    if features == "on":
        plain = {"Content-Type": "application/json"}
        refused = requests.post(url, data=body, headers=plain, timeout=60)
        if refused.status_code != 401:
            raise RuntimeError(f"AUTH=required, yet no key answered {refused.status_code}")
        v2 = v2_json_load(client, model, header)
    return Stack(
        request=request,
        features=features,
        client=client,
        settings=settings,
        model=model,
        model_ids=model_ids,
        v2=v2,
    )


def v2_json_load(client: Client, model: BenchModel, header: str) -> Loaded:
    """The same row through ``/v2/models/{name}/infer`` as JSON, loaded at 16 connections."""
    url = f"{client.base_url}/v2/models/{model.v2_name}/infer"
    body = one_row_bodies(model.rows[0])["v2"]
    request = Request("ours", "every feature on, /v2 JSON", url, body, header=header)
    why = probe(request)
    if why:
        raise RuntimeError(why)
    return Loaded(request, (max(CONNECTIONS),))


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


def access_log_lines(folder: Path) -> int:
    """The access-log lines of the predictions in the API's log file: the request line
    in quotes, with its protocol (our own JSON line per request has no protocol)."""
    request_line = '"POST /v1/models/bench-digits@production/predict HTTP/1.1"'
    with (folder / "api.log").open(errors="replace") as log:
        return sum(request_line in line for line in log)


def logged_rows(stack: Stack) -> list[int]:
    """The rows the prediction log wrote, per version (the canary's two)."""
    with make_session_factory(stack.settings.database_url)() as session:
        return [count_since(session, model_id, LONG_AGO) for model_id in stack.model_ids]


@dataclass
class Backend:
    database: str
    stacks: dict[str, Stack]
    load_averages: list[float]
    mlflow: list[Loaded]
    mlflow_why: str = ""
    dropped: float = 0.0
    logged: list[int] = field(default_factory=list)
    access_lines: int = 0


@contextmanager
def mlflow_servers(stack: Stack, python: Path, folder: Path) -> Iterator[list[Loaded]]:
    """MLflow's scoring server in each of bench/serving.py's configurations, on the digits
    weights of ``stack``, side by side until the block ends; each checked against our
    probabilities, then loaded at 16 connections in every round."""
    say(f"saving {stack.model.title} for MLflow")
    peer = save_peer(stack.client, stack.model, python, folder)
    ours = our_probabilities(stack.client, stack.model, stack.model.rows[:1])
    body = one_row_bodies(stack.model.rows[0])["mlflow"]
    with ExitStack() as running:
        servers = []
        for configuration, workers in MLFLOW_WORKERS.items():
            base_url = running.enter_context(mlflow_server(python, peer, workers, folder))
            url = base_url + "/invocations"
            request = Request(f"MLflow {configuration}", "/invocations", url, body)
            check_mlflow_answer(request, ours)
            servers.append(Loaded(request, (max(CONNECTIONS),)))
        yield servers


@contextmanager
def started_backend(
    database: str, args: argparse.Namespace, folder: Path, mlflow: bool
) -> Iterator[Backend]:
    """One backend's stacks, and MLflow's servers beside them when ``mlflow``, up until the
    block ends."""
    with stacks(database, folder) as ready, ExitStack() as peers:
        servers, why = [], ""
        if mlflow and not (args.mlflow_venv / "bin" / "mlflow").exists():
            why = f"skipped: no MLflow venv at {args.mlflow_venv}"
        elif mlflow:
            python = args.mlflow_venv / "bin" / "python"
            servers = peers.enter_context(mlflow_servers(ready["off"], python, folder))
        yield Backend(database, ready, [], servers, why)


def in_round_order(backends: list[Backend], round_number: int) -> list[Backend]:
    """The backends in the order of one round: each round starts one further along, so that
    no backend always runs right after the same other one."""
    shift = (round_number - 1) % len(backends)
    return backends[shift:] + backends[:shift]


def measure_backends(args: argparse.Namespace, folder: Path) -> list[Backend]:
    """Every backend's stacks up side by side and loaded in interleaved rounds (each round
    loads every backend in turn: ON, OFF, the /v2 load, MLflow's servers), so that a
    difference between backends is not one between two halves of the run; then the
    prediction log's figures."""
    with ExitStack() as running:
        backends = [
            running.enter_context(
                started_backend(database, args, folder, index == 0 and not args.no_mlflow)
            )
            for index, database in enumerate(args.databases)
        ]
        for round_number in range(1, args.rounds + 1):
            for backend in in_round_order(backends, round_number):
                say(f"{backend.database}, round {round_number}")
                v2_loads = [stack.v2 for stack in backend.stacks.values() if stack.v2]
                for loaded in [*backend.stacks.values(), *v2_loads, *backend.mlflow]:
                    backend.load_averages.append(os.getloadavg()[0])
                    loaded.load(args.warmup, args.seconds, folder)
        for backend in backends:
            backend.load_averages.append(os.getloadavg()[0])
        time.sleep(SETTLE_SECONDS)
        for backend in backends:
            backend.dropped = dropped_rows(backend.stacks["on"])
            backend.logged = logged_rows(backend.stacks["on"])
            backend.access_lines = access_log_lines(folder / f"{backend.database}-on")
        return backends


# --- The report -----------------------------------------------------------------------------


def median(loaded: Loaded, connections: int, figure: str) -> float:
    return statistics.median(getattr(result, figure) for result in loaded.results[connections])


def verdict(per_round: list[bool]) -> str:
    """met in every round, in none, or in some: noisy."""
    if all(per_round):
        return "met"
    if not any(per_round):
        return "**not met**"
    return f"noisy ({sum(per_round)} of {len(per_round)} rounds met)"


def load_lines(backend: str, server: str, loaded: Loaded, connections: int) -> str:
    results = loaded.results[connections]
    errors = sum(result.errors for result in results)
    requests_sent = sum(result.requests for result in results)
    return (
        f"| {backend} | {server} | {connections} | "
        f"{median(loaded, connections, 'requests_per_second'):,.0f} | "
        f"{median(loaded, connections, 'p50_ms'):.3f} | "
        f"{median(loaded, connections, 'p99_ms'):.2f} | {cpu_cell(results)} | "
        f"{errors} of {requests_sent:,} |"
    )


def load_table(backends: list[Backend]) -> list[str]:
    lines = [
        "| backend | server | connections | requests/s | p50 ms | p99 ms "
        "| server CPU ms / request | errors (all rounds) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend in backends:
        for connections in CONNECTIONS:
            for features, stack in backend.stacks.items():
                lines.append(load_lines(backend.database, features.upper(), stack, connections))
        for features, stack in backend.stacks.items():
            if stack.v2:
                server = f"{features.upper()}, /v2 JSON"
                lines += [
                    load_lines(backend.database, server, stack.v2, c) for c in stack.v2.connections
                ]
        for server in backend.mlflow:
            name, beside = server.request.server, f"(beside {backend.database})"
            lines += [load_lines(beside, name, server, c) for c in server.connections]
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


def target_rows(backend: Backend, servers: list[Loaded], why: str) -> list[str]:
    """Each target's verdict for one backend, in the order of TARGETS; ``servers``: MLflow's
    (run beside the first backend, round by round), or none and ``why``."""
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
    if not servers:
        return [*cells, why, why]
    return [
        *cells,
        times_mlflow(loaded, servers, 3),
        times_mlflow(on.v2.results[max(CONNECTIONS)], servers, 2),
    ]


def times_mlflow(loaded: list[WrkResult], servers: list[Loaded], target: float) -> str:
    """Each round of ours at 16 connections against the same round's best MLflow
    configuration: the median ratio, and whether each round reached ``target``."""
    best = [
        max(round_results, key=lambda r: r.requests_per_second)
        for round_results in zip(*(s.results[max(CONNECTIONS)] for s in servers), strict=True)
    ]
    ratios = [
        ours.requests_per_second / theirs.requests_per_second
        for ours, theirs in zip(loaded, best, strict=True)
    ]
    return (
        f"{statistics.median(ratios):.2f}x (MLflow's best "
        f"{statistics.median(r.requests_per_second for r in best):,.0f}/s), "
        f"{verdict([x >= target for x in ratios])}"
    )


TARGETS = [
    "ON, 1 connection: p50 < 1 ms",
    "ON p50 at most 0.2 ms above OFF (1 connection)",
    "ON, 16 connections: p99 < 20 ms",
    "ON, 16 connections: no errors",
    "ON, 16 connections: >= 3x MLflow's best",
    "ON, /v2 JSON, 16 connections: >= 2x MLflow's best",
]


def targets_table(backends: list[Backend]) -> list[str]:
    lines = [
        "| target | " + " | ".join(b.database for b in backends) + " |",
        "| --- |" + " --- |" * len(backends),
    ]
    first = backends[0]
    why = first.mlflow_why or "skipped (--no-mlflow)"
    cells = [target_rows(backend, first.mlflow, why) for backend in backends]
    for index, target in enumerate(TARGETS):
        lines.append(f"| {target} | " + " | ".join(c[index] for c in cells) + " |")
    return lines


def prediction_log_lines(backends: list[Backend]) -> list[str]:
    return [
        f"- {b.database}, prediction log (ON): {b.dropped:.0f} rows dropped (/metrics), "
        f"{sum(b.logged):,} rows written ({' and '.join(f'{n:,}' for n in b.logged)} by the "
        f"canary's versions 1 and 2) for {answered_on(b):,} requests wrk saw answered "
        "(a request still in flight when wrk stops is written but not counted by wrk); "
        f"{b.access_lines:,} access-log lines"
        for b in backends
    ]


def answered_on(backend: Backend) -> int:
    """The requests the ON stack answered, /v1 and /v2 (each is logged)."""
    on = backend.stacks["on"]
    return on.answered + (on.v2.answered if on.v2 else 0)


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
    with work_folder() as folder:
        backends = measure_backends(args, folder)
    print(report(backends, args, started))


if __name__ == "__main__":
    main()
