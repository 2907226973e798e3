"""`backprop run` with nothing configured: files under ./var/, API and worker; Ctrl-C or a
SIGTERM stops all."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.factories import free_port, job_body

SETTINGS_VARIABLES = {"DATABASE_URL", "BROKER_URL", "PORT", "WEB_CONCURRENCY"}


def wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError("timed out")


def running_processes(session_id: int) -> list[str]:
    """The processes of a session that have not exited (a zombie has; its new parent reaps it)."""
    listing = subprocess.run(
        ["ps", "-o", "pid=,stat=,args=", "-s", str(session_id)], capture_output=True, text=True
    ).stdout
    return [line for line in listing.splitlines() if not line.split()[1].startswith("Z")]


def kill_session(session_id: int) -> None:
    """SIGKILL every process of the session: the children lead process groups of their own."""
    for line in running_processes(session_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


def ctrl_c(pid: int) -> None:
    """What a terminal sends on Ctrl-C: SIGINT to the whole foreground process group."""
    os.killpg(pid, signal.SIGINT)


def terminate(pid: int) -> None:
    """What a process manager sends: SIGTERM to `backprop run` alone."""
    os.kill(pid, signal.SIGTERM)


@pytest.mark.parametrize("stop", [ctrl_c, terminate])
def test_run_serves_and_trains_with_the_embedded_default_and_stops_all(tmp_path, stop):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    env["PORT"] = str(port)
    base = f"http://127.0.0.1:{port}"
    run = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "run"],
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / "run.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: requests.get(f"{base}/health/ready", timeout=5).ok, timeout=60)
        dataset = requests.post(f"{base}/v1/datasets", json={"builtin": "xor"}, timeout=10).json()
        job = requests.post(f"{base}/v1/jobs", json=job_body(dataset["id"], 50), timeout=10).json()
        done = wait_for(
            lambda: (
                requests.get(f"{base}/v1/jobs/{job['id']}", timeout=5).json()["status"]
                == "succeeded"
            ),
            timeout=60,
        )
        assert done
        assert (tmp_path / "var" / "backprop.sqlite").exists()
        assert (tmp_path / "var" / "broker.sqlite").exists()
        stop(run.pid)
        assert run.wait(timeout=40) == 0
        assert running_processes(run.pid) == [], (tmp_path / "run.log").read_text()[-3000:]
    finally:
        kill_session(run.pid)
