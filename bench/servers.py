"""The request path's server (issue 29): Granian's WSGI mode (as ``backprop api`` runs it),
gunicorn ``gthread`` (as it ran before, with gunicorn's own worker class), gunicorn ``sync`` and
uWSGI, each serving the same Flask app, under wrk's keep-alive connections.

    python -m bench.servers [--rounds 2] [--seconds 10]

A stack as ``make run`` starts it (bench/contracts.py's ``stack_of``: ``backprop api``, a worker,
the dispatcher; keys, rate limits and the access log off, the prediction log on, SQLite) trains
the digits model (64-64-10); then each other server is started in turn on the same database and
settings (bench/wsgi_app.py: the app made in each worker process), with 2 processes (as
``WEB_CONCURRENCY``'s default) and, where the server has threads, ``THREADS_PER_PROCESS``
each, and no access log of its own. wrk (one thread) sends one row per request to
``/v1/models/digits/predict`` at 1 and 16 connections for ``--seconds`` after a 2 s warm-up;
the servers take turns, round after round, and the report gives each figure's median over the
rounds. gunicorn's ``sync`` worker closes the connection after each answer (it has no
keep-alive), so wrk reconnects for every request there: that is what it would cost.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.contracts import REPO, bodies, stack_of, trained_digits
from bench.serving import Request, WrkResult, cpu_cell, free_port, require_wrk, run_wrk, say
from service.api.events import THREADS_PER_PROCESS

BIN = Path(sys.executable).parent
APP = "bench.wsgi_app:app"
PROCESSES = 2
OURS = "backprop api (Granian WSGI)"
CONNECTIONS = (1, 16)


def server_commands(port: int) -> dict[str, list[str]]:
    """How each other server is started on ``port``, 2 processes, no access log."""
    address = f"127.0.0.1:{port}"
    threads = str(THREADS_PER_PROCESS)
    return {
        "gunicorn gthread": [
            str(BIN / "gunicorn"), "-k", "gthread", "--threads", threads,
            "-w", str(PROCESSES), "-b", address, APP,
        ],
        "gunicorn sync": [
            str(BIN / "gunicorn"), "-k", "sync", "-w", str(PROCESSES), "-b", address, APP
        ],
        "uWSGI": [
            str(BIN / "uwsgi"),
            "--http11-socket", address,
            "--module", APP,
            "--master",
            "--processes", str(PROCESSES),
            "--threads", threads,
            "--lazy-apps",
            "--disable-logging",
            "--die-on-term",
            "--need-app",
        ],
    }  # fmt: skip


def wait_until_ready(base_url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            if requests.get(f"{base_url}/v2/health/ready", timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # not listening, or still booting
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base_url} was not ready within {timeout} s")


@contextmanager
def running(command: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    """The server ``command`` starts on ``port``, until the block ends; its base URL."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_ready(f"http://127.0.0.1:{port}", process)
            yield f"http://127.0.0.1:{port}"
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def digits_request(base_url: str, body: bytes) -> Request:
    return Request("server", "instances", f"{base_url}/v1/models/digits/predict", body)


def measure(request: Request, seconds: int, folder: Path) -> dict[int, WrkResult]:
    """A 2 s warm-up at the most connections, then ``seconds`` at each of ``CONNECTIONS``."""
    run_wrk(request, max(CONNECTIONS), 2, folder)  # warm-up
    return {
        connections: run_wrk(request, connections, seconds, folder) for connections in CONNECTIONS
    }


def report(
    results: dict[str, list[dict[int, WrkResult]]], rounds: int, seconds: int, label="server"
) -> str:
    """The medians over the rounds of each of ``results``' rows (servers, or variants)."""
    lines = [
        f"Median of {rounds} rounds of {seconds} s; one digits row per request.",
        "",
        f"| {label} | connections | requests/s | p50 ms | p99 ms | server CPU ms / request "
        "| errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for server, runs in results.items():
        for connections in CONNECTIONS:
            figures = [run[connections] for run in runs]
            rps = statistics.median(f.requests_per_second for f in figures)
            p50 = statistics.median(f.p50_ms for f in figures)
            p99 = statistics.median(f.p99_ms for f in figures)
            errors = sum(f.errors for f in figures)
            lines.append(
                f"| {server} | {connections} | {rps:,.0f} | {p50:.2f} | {p99:.2f} "
                f"| {cpu_cell(figures)} | {errors} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args(argv)
    require_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as name:
        folder = Path(name)
        settings = {
            "DATABASE_URL": f"sqlite:///{folder / 'backprop.sqlite'}",
            "BROKER_URL": f"sqla+sqlite:///{folder / 'broker.sqlite'}",
        }
        with stack_of(REPO, folder, settings) as stack_url:
            body = bodies(trained_digits(stack_url))["instances"]
            env = {
                **os.environ,
                **settings,
                "PYTHONPATH": str(REPO),
                "AUTH": "off",
                "LOG_LEVEL": "WARNING",
                "RATE_LIMIT": "off",
                "PREDICT_RATE_LIMIT": "off",
            }
            results: dict[str, list[dict[int, WrkResult]]] = {OURS: []}
            results |= {server: [] for server in server_commands(0)}
            for round_number in range(1, args.rounds + 1):
                say(f"round {round_number}: {OURS}")
                results[OURS].append(measure(digits_request(stack_url, body), args.seconds, folder))
                port = free_port()
                for server, command in server_commands(port).items():
                    say(f"round {round_number}: {server}")
                    log = folder / f"{server.replace(' ', '-')}.log"
                    with running(command, port, env, log) as base_url:
                        request = digits_request(base_url, body)
                        results[server].append(measure(request, args.seconds, folder))
    print(report(results, args.rounds, args.seconds))


if __name__ == "__main__":
    main()
