"""The process supervisor: the API, workers and the dispatcher as child processes, for
`backprop run`, the integration tests and the benchmark.

Children are started with ``python -m service.commands.cli``, so they run the same code as
`backprop`. Each child leads its own process group, so a Ctrl-C in the terminal reaches only the
parent, which then stops every child once, with SIGTERM (a warm shutdown), instead of every process
hearing both the terminal's SIGINT and its parent's signal (which once deadlocked a worker of
gunicorn, the API's server before Granian).
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from service.db.migrate import upgrade
from service.logs import configure_logging
from service.settings import Settings

logger = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 20
READY_POLL_MAX_SECONDS = 2.0


@dataclass
class LocalStack:
    """``backprop api``, ``workers`` x ``backprop worker``, ``backprop webhook-worker`` and
    ``backprop dispatcher``, stopped together.

    ``env`` is the children's whole environment (settings come from it), with DRAIN_SECONDS 0
    unless it says otherwise: no load balancer stands in front of a local stack, so the API
    stops at once; with ``logs`` set each child writes to ``logs/<name>.log``, otherwise to
    this process's output. ``worker_args`` go to every `backprop worker` (and so to celery
    worker).
    """

    env: Mapping[str, str]
    workers: int = 1
    logs: Path | None = None
    worker_args: tuple[str, ...] = ()
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self) -> "LocalStack":
        self._spawn("api", ["api"])
        self._spawn("dispatcher", ["dispatcher"])
        self._spawn("webhook-worker", ["webhook-worker", "--hostname=webhooks@%h"])
        for number in range(self.workers):
            hostname = f"--hostname=worker{number}@%h"
            self._spawn(f"worker-{number}", ["worker", hostname, *self.worker_args])
        return self

    def _spawn(self, name: str, args: list[str]) -> None:
        output = None if self.logs is None else (self.logs / f"{name}.log").open("w")
        command = [sys.executable, "-m", "service.commands.cli", *args]
        self.processes[name] = subprocess.Popen(
            command,
            env={"DRAIN_SECONDS": "0", **self.env},
            stdout=output,
            stderr=subprocess.STDOUT,
            process_group=0,
        )

    def wait_until_ready(self, base_url: str, timeout: float = 60) -> None:
        """Poll ``/health/ready`` until it answers 200; raise ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answers_ready(base_url):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{base_url} was not ready within {timeout} s")

    def wait_until_ready_or_exit(self, base_url: str) -> int | None:
        """Poll ``/health/ready`` until it answers 200 (``None``) or a child exits (its exit
        code), less often the longer it takes: every poll is a request log line."""
        pause = 0.2
        while not answers_ready(base_url):
            for process in self.processes.values():
                if process.poll() is not None:
                    return process.returncode
            time.sleep(pause)
            pause = min(pause * 2, READY_POLL_MAX_SECONDS)
        return None

    def wait_for_first_exit(self) -> int:
        """Block until one child exits and return its exit code."""
        while True:
            for process in self.processes.values():
                try:
                    return process.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue

    def stop(self) -> None:
        """SIGTERM every child (a warm shutdown), then SIGKILL what outlives the timeout; the
        log names the children waited for."""
        running = {
            name: process for name, process in self.processes.items() if process.poll() is None
        }
        for process in running.values():
            process.send_signal(signal.SIGTERM)
        if running:
            waiting = ", ".join(f"{name} (pid {process.pid})" for name, process in running.items())
            logger.info("waiting up to %d s for %s to stop", STOP_TIMEOUT_SECONDS, waiting)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("%s (pid %d) did not stop in time: killed", name, process.pid)
                process.kill()
                process.wait()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *_exc_info) -> None:
        self.stop()


def answers_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health/ready", timeout=5):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def stop_on_signals() -> None:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt and SIGTERM SystemExit, whatever this process
    inherited: a shell that starts a job in the background makes it ignore SIGINT. Either way
    ``with LocalStack`` then stops the children, which lead process groups of their own and
    hear no signal sent to this process alone."""

    def leave(_signal_number, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, leave)


def run_all(settings: Settings, _args: argparse.Namespace) -> int:
    """``backprop run``: migrate, then run the API, one worker, the webhook worker and the
    dispatcher as child processes until one exits, Ctrl-C or SIGTERM."""
    upgrade(settings)
    configure_logging(settings)  # after Alembic, which configures logging its own way
    stop_on_signals()
    base_url = local_url(settings)
    with LocalStack(os.environ, workers=1) as stack:
        try:
            exit_code = stack.wait_until_ready_or_exit(base_url)
            if exit_code is not None:
                return exit_code
            print(ready_message(base_url), flush=True)
            return stack.wait_for_first_exit()
        except KeyboardInterrupt:
            return 0


def local_url(settings: Settings) -> str:
    """The API's address as this host reaches it: a wildcard host is reached on loopback."""
    host = settings.host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def ready_message(base_url: str) -> str:
    """What `backprop run` prints once the API answers ready."""
    return (
        "backprop: ready\n"
        f"  Dashboard: {base_url}/\n"
        f"  API:       {base_url}  (/v1, /v2)\n"
        f"  Docs:      {base_url}/docs\n"
        f"  OpenAPI:   {base_url}/openapi.json"
    )
