"""`backprop run` with nothing configured: files under ./var/, API and worker, Ctrl-C stops all."""

import os
import signal
import subprocess
import sys
import time

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


def test_run_serves_and_trains_with_the_embedded_default_and_stops_on_ctrl_c(tmp_path):
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
        os.killpg(run.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        assert run.wait(timeout=40) == 0
        leftovers = subprocess.run(
            ["pgrep", "-s", str(run.pid)], capture_output=True, text=True
        ).stdout.split()
        assert leftovers == [], (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
