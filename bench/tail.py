"""The tail at 16 connections (issue 29: p99 < 20 ms with every feature on): where it comes
from, measured inside the server's workers, and what a change to the server does to it, the
variants taking turns in one run.

    python -m bench.tail [--variants unfrozen shipped] [--rounds 3] [--seconds 8]  # bench-tail

A stack with every feature on (bench/features.py's ``ON``: ``AUTH=required`` and a key, both
rate limits counted, the prediction log, a 90/10 canary on ``bench-digits@production``, the
access log) is started on SQLite and the embedded broker, as ``make run`` starts it, and trains
the model twice. Then each variant's API (bench/tail_server.py: ``backprop api``'s gunicorn, 2
processes, its workers instrumented, the variant applied after the warm-up) is started beside
it on the same database and settings. Round after round each variant in turn gets a 2 s warm-up
and then ``--seconds`` of wrk (one thread, 16 connections, one digits row per request); what its
workers recorded during that run is collected after it (SIGUSR2). The report gives wrk's
figures (median of the rounds) and the workers' own, pooled over the rounds: the app's time per
request, the two hand-offs of gunicorn's gthread worker (poller to pool thread, pool thread
back to the poller), the pool thread's whole request and its CPU time, the collector's pauses,
the prediction log's writes, and which requests a write or a collection overlapped. The
in-worker figures are the ones to compare on a shared machine: a collection's or a write's CPU
time is the same whatever the load. The variants are bench/tail_server.py's ``VARIANTS``.
"""

import argparse
import dataclasses
import json
import os
import signal
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.features import FEATURES, prepared
from bench.servers import running
from bench.service import UNLIMITED
from bench.serving import (
    WrkResult,
    free_port,
    machine,
    require_wrk,
    run_wrk,
    running_service,
    say,
    work_folder,
)

CONNECTIONS = 16
SPANS = ("app", "to_thread", "handle", "handle_cpu", "to_poller")


@dataclasses.dataclass
class Variant:
    name: str
    folder: Path
    request: object = None
    wrk: list[WrkResult] = dataclasses.field(default_factory=list)
    spans: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {span: [] for span in SPANS}
    )
    gc: list[tuple[int, float, float, float]] = dataclasses.field(default_factory=list)
    flushes: list[tuple[int, float, float, float]] = dataclasses.field(default_factory=list)
    # Per request: its time in ``handle``, and whether a prediction-log write or a collection of
    # generation 1 or 2 of its own process overlapped it.
    overlaps: list[tuple[float, bool, bool]] = dataclasses.field(default_factory=list)
    loads: list[float] = dataclasses.field(default_factory=list)

    def collect(self, keep: bool) -> None:
        """Every worker's figures since the last call (kept when ``keep``)."""
        for marker in self.folder.glob("worker-*"):
            os.kill(int(marker.name.removeprefix("worker-")), signal.SIGUSR2)
        time.sleep(1.0)
        for path in self.folder.glob("*.json"):
            figures = json.loads(path.read_text())
            path.unlink()
            if keep:
                for span, values in figures["spans"].items():
                    self.spans[span] += values
                self.gc += [tuple(each) for each in figures["gc"]]
                self.flushes += [tuple(each) for each in figures["flushes"]]
                self.overlaps += overlaps(figures)


def overlapping(requests: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    """Which of ``requests`` (rows of start, end) overlap any of ``intervals``."""
    hit = np.zeros(len(requests), dtype=bool)
    for start, end in intervals:
        hit |= (requests[:, 0] < end) & (requests[:, 1] > start)
    return hit


def overlaps(figures: dict) -> list[tuple[float, bool, bool]]:
    """One process's requests: time in ``handle``, overlapped by a write of its prediction
    log, overlapped by one of its collections of generation 1 or 2."""
    requests = np.array(figures["requests"], dtype=float).reshape(-1, 2)
    writes = [(start, start + wall) for _, start, wall, _ in figures["flushes"]]
    collections = [(start, start + wall) for g, start, wall, _ in figures["gc"] if g > 0]
    by_write, by_collection = overlapping(requests, writes), overlapping(requests, collections)
    times = requests[:, 1] - requests[:, 0]
    return list(zip(times.tolist(), by_write.tolist(), by_collection.tolist(), strict=True))


def variant_env(settings, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "BROKER_URL": settings.broker_url,
        **UNLIMITED,
        **FEATURES["on"],
        "PORT": str(port),
    }


def ms(values, q: float) -> str:
    return f"{np.percentile(values, q) * 1e3:.2f}" if len(values) else "-"


def wrk_lines(variants: list[Variant]) -> list[str]:
    lines = [
        "| variant | requests/s | p50 ms | p99 ms | p99 per round | errors | load average |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for v in variants:
        rounds = ", ".join(f"{r.p99_ms:.1f}" for r in v.wrk)
        lines.append(
            f"| {v.name} | {statistics.median(r.requests_per_second for r in v.wrk):,.0f} | "
            f"{statistics.median(r.p50_ms for r in v.wrk):.2f} | "
            f"{statistics.median(r.p99_ms for r in v.wrk):.2f} | {rounds} | "
            f"{sum(r.errors for r in v.wrk)} | {min(v.loads):.1f} to {max(v.loads):.1f} |"
        )
    return lines


def span_lines(variants: list[Variant]) -> list[str]:
    lines = [
        "| variant | span | count | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in variants:
        for span in SPANS:
            values = v.spans[span]
            lines.append(
                f"| {v.name} | {span} | {len(values):,} | {ms(values, 50)} | {ms(values, 90)} | "
                f"{ms(values, 99)} | {ms(values, 99.9)} | {ms(values, 100)} |"
            )
    return lines


def gc_lines(variants: list[Variant]) -> list[str]:
    lines = [
        "| variant | generation | collections | per 1,000 requests | wall p50 ms | wall max ms "
        "| CPU p50 ms | CPU max ms | CPU ms per 1,000 requests |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in variants:
        requests = max(len(v.spans["app"]), 1)
        for generation in (0, 1, 2):
            walls = [w for g, _, w, _ in v.gc if g == generation]
            cpus = [c for g, _, _, c in v.gc if g == generation]
            lines.append(
                f"| {v.name} | {generation} | {len(walls):,} | "
                f"{len(walls) * 1000 / requests:.1f} | {ms(walls, 50)} | {ms(walls, 100)} | "
                f"{ms(cpus, 50)} | {ms(cpus, 100)} | {sum(cpus) * 1e6 / requests:.2f} |"
            )
    return lines


def flush_lines(variants: list[Variant]) -> list[str]:
    lines = [
        "| variant | flushes | rows per flush (median) | wall p50 ms | wall max ms | CPU p50 ms "
        "| CPU max ms | CPU us per row |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in variants:
        rows = [r for r, _, _, _ in v.flushes]
        walls = [w for _, _, w, _ in v.flushes]
        cpus = [c for _, _, _, c in v.flushes]
        per_row = sum(cpus) * 1e6 / max(sum(rows), 1)
        lines.append(
            f"| {v.name} | {len(rows)} | {statistics.median(rows) if rows else 0:,.0f} | "
            f"{ms(walls, 50)} | {ms(walls, 100)} | {ms(cpus, 50)} | {ms(cpus, 100)} | "
            f"{per_row:.1f} |"
        )
    return lines


def overlap_lines(variants: list[Variant]) -> list[str]:
    lines = [
        "| variant | requests | overlapped by a prediction-log write | their handle p99 ms | "
        "the others' p99 ms | of the slowest 1%: during a write | during a gen 1/2 collection |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in variants:
        if not v.overlaps:
            continue
        times = np.array([t for t, _, _ in v.overlaps])
        by_write = np.array([w for _, w, _ in v.overlaps])
        by_collection = np.array([c for _, _, c in v.overlaps])
        slowest = times >= np.percentile(times, 99)
        lines.append(
            f"| {v.name} | {len(times):,} | {by_write.mean():.1%} | {ms(times[by_write], 99)} | "
            f"{ms(times[~by_write], 99)} | {by_write[slowest].mean():.1%} | "
            f"{by_collection[slowest].mean():.1%} |"
        )
    return lines


def report(variants: list[Variant], args, started: str) -> str:
    return "\n".join(
        [
            f"{started}, {machine()}; every feature on, SQLite; wrk -t1 -c{CONNECTIONS}, "
            f"{args.seconds} s per run after a 2 s warm-up, {args.rounds} rounds, the variants "
            "taking turns",
            "",
            *wrk_lines(variants),
            "",
            "In the workers (pooled over the rounds):",
            "",
            *span_lines(variants),
            "",
            *gc_lines(variants),
            "",
            "The prediction log's writes (its thread, once a second per worker):",
            "",
            *flush_lines(variants),
            "",
            "Which requests the writes and the collections overlapped (in their own process):",
            "",
            *overlap_lines(variants),
        ]
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["unfrozen", "shipped"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    require_wrk()
    started = datetime.now(UTC).strftime("%d %b %Y, %H:%M UTC")
    with work_folder() as folder, ExitStack() as running_now:
        own = folder / "stack"
        own.mkdir()
        say("starting the stack with every feature on")
        client, settings = running_now.enter_context(
            running_service("embedded", own, FEATURES["on"])
        )
        stack = prepared("on", client, settings)
        variants = []
        for name in args.variants:
            variant = Variant(name, folder / name)
            variant.folder.mkdir()
            port = free_port()
            command = [sys.executable, "-m", "bench.tail_server", name, str(variant.folder)]
            log = folder / f"{name}.log"
            base_url = running_now.enter_context(
                running(command, port, variant_env(settings, port), log)
            )
            url = stack.request.url.replace(client.base_url, base_url)
            variant.request = dataclasses.replace(stack.request, url=url)
            variants.append(variant)
        for round_number in range(1, args.rounds + 1):
            for variant in variants:
                say(f"round {round_number}: {variant.name}")
                variant.loads.append(os.getloadavg()[0])
                run_wrk(variant.request, CONNECTIONS, 2, folder)
                variant.collect(keep=False)
                variant.wrk.append(run_wrk(variant.request, CONNECTIONS, args.seconds, folder))
                variant.collect(keep=True)
                variant.loads.append(os.getloadavg()[0])
        print(report(variants, args, started))


if __name__ == "__main__":
    main()
