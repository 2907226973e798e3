"""Where the tail at 16 connections comes from: the kernel's split of the connections between
the API's processes, or the cores themselves.

    python -m bench.tail --backend embedded --rounds 4 --seconds 8

Every feature on (bench/features.py's stack: its key, canary, prediction log and limits stay
up). Each round loads two layouts in turn, each one or two fresh ``backprop api`` on the stack's
database and broker (bench/api_settings.py's environment), with the same request:

* ``one``: one API of two processes (``WEB_CONCURRENCY=2``, as deployed), wrk's 16 kept-alive
  connections on its port. The kernel deals each connection to whichever process accepts it
  first; ``ss``, halfway through the load, counts each process's share.
* ``two``: two APIs of one process each, 8 connections on each (two wrk at once): the split
  even by construction, the same processes and connections in all.

For each: the requests/s of all its wrk, their p50 and p99 (``two``: the worse of its two
halves), the server's CPU per request and the time its threads spent runnable but waiting for a
core (the run-queue wait: the second field of /proc/PID/task/TID/schedstat, summed over every
thread of every API process), per request answered. Medians over the rounds; the splits seen.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.api_settings import api_environment, request_to
from bench.features import Stack, stacks
from bench.server_cpu import PROC, server_processes
from bench.servers import running
from bench.serving import Request, WrkResult, free_port, run_wrk, say

BACKPROP = Path(sys.executable).parent / "backprop"
# Per layout, one (processes, connections) pair per API.
LAYOUTS = {"one": ((2, 16),), "two": ((1, 8), (1, 8))}
WARM_UP_SECONDS = 2


@dataclass(frozen=True)
class Load:
    """One layout's figures in one round."""

    results: list[WrkResult]
    split: list[int]  # established connections per API process, most first
    run_queue_wait_ms: float  # per request answered

    @property
    def requests(self) -> int:
        return sum(result.requests for result in self.results)

    @property
    def requests_per_second(self) -> float:
        return sum(result.requests_per_second for result in self.results)

    @property
    def server_cpu_ms(self) -> float:
        spent = sum(result.server_cpu_ms * result.requests for result in self.results)
        return spent / self.requests


def run_queue_wait_ms(pids: list[int]) -> float:
    """Milliseconds every thread of ``pids`` has waited for a core so far (schedstat)."""
    waited_ns = 0
    for pid in pids:
        for schedstat in (PROC / str(pid) / "task").glob("*/schedstat"):
            try:
                waited_ns += int(schedstat.read_text().split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread gone meanwhile
    return waited_ns / 1e6


def connection_split(ports: list[int]) -> list[int]:
    """How many established connections each process serving ``ports`` holds, most first."""
    ports_filter = " or ".join(f"sport = :{port}" for port in ports)
    listing = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( {ports_filter} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return connections_per_process(listing)


def connections_per_process(listing: str) -> list[int]:
    """From ``ss -p``'s lines, one a connection: the count of each process's, most first."""
    return sorted(Counter(re.findall(r"pid=(\d+)", listing)).values(), reverse=True)


def wrk_at_once(loads: list[tuple[Request, int]], seconds: int, folder: Path, during=None):
    """Every ``(request, connections)`` under a wrk of its own at the same time; ``during()``
    called halfway through. The results in ``loads``' order, and what ``during`` returned."""
    with ThreadPoolExecutor(len(loads)) as pool:
        running_wrk = [pool.submit(run_wrk, request, n, seconds, folder) for request, n in loads]
        time.sleep(seconds / 2)
        seen = during() if during else None
        return [future.result() for future in running_wrk], seen


def load_layout(stack: Stack, layout: str, seconds: int, folder: Path) -> Load:
    """``layout``'s APIs started on ``stack``, warmed up, then loaded for ``seconds``."""
    with ExitStack() as apis:
        loads, ports = [], []
        for processes, connections in LAYOUTS[layout]:
            port = free_port()
            env = {
                **api_environment(stack, "on"),
                "PORT": str(port),
                "WEB_CONCURRENCY": str(processes),
            }
            log = folder / f"api-{port}.log"
            url = apis.enter_context(running([str(BACKPROP), "api"], port, env, log))
            loads.append((request_to(stack, url, layout), connections))
            ports.append(port)
        wrk_at_once(loads, WARM_UP_SECONDS, folder)
        pids = [pid for port in ports for pid in server_processes(port)]
        waited_before = run_queue_wait_ms(pids)
        results, split = wrk_at_once(loads, seconds, folder, lambda: connection_split(ports))
        waited = run_queue_wait_ms(pids) - waited_before
    return Load(results, split, waited / sum(result.requests for result in results))


def report(loads: dict[str, list[Load]], seconds: int) -> str:
    lines = [
        f"Median of {len(next(iter(loads.values())))} rounds of {seconds} s; every feature on.",
        "",
        "| layout | requests/s | p50 ms | p99 ms | server CPU ms / request "
        "| run-queue wait ms / request | connections per process, each round | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for layout, rounds in loads.items():
        rps = statistics.median(load.requests_per_second for load in rounds)
        p50 = statistics.median(max(r.p50_ms for r in load.results) for load in rounds)
        p99 = statistics.median(max(r.p99_ms for r in load.results) for load in rounds)
        cpu = statistics.median(load.server_cpu_ms for load in rounds)
        wait = statistics.median(load.run_queue_wait_ms for load in rounds)
        splits = ", ".join("/".join(map(str, load.split)) for load in rounds)
        errors = sum(r.errors for load in rounds for r in load.results)
        lines.append(
            f"| {layout} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.3f} | {wait:.3f} "
            f"| {splits} | {errors} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("embedded", "postgres"), default="embedded")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tail-") as name:
        folder = Path(name)
        with stacks(args.backend, folder) as ready:
            loads: dict[str, list[Load]] = {layout: [] for layout in LAYOUTS}
            for round_number in range(1, args.rounds + 1):
                for layout in LAYOUTS:
                    say(f"round {round_number}: {layout}")
                    loads[layout].append(load_layout(ready["on"], layout, args.seconds, folder))
    print(report(loads, args.seconds))


if __name__ == "__main__":
    main()
