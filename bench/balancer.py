"""API replicas behind HAProxy (issue 27): what the balancer costs a prediction, and what the
warm-up buys a replica's first callers.

    python -m bench.balancer [--rounds 3] [--seconds 10]

Needs haproxy and wrk (``apt-get install -y haproxy wrk``). On a throwaway SQLite database it
trains, in this process (the worker's own function, no worker process), the digits model
(64-512-512-10, 300,000 parameters, one epoch) 21 times: ``m01`` to ``m20`` each under
the alias ``production``, and ``cold`` under none.

* Through the balancer: three ``backprop api`` replicas of one worker process each
  (WEB_CONCURRENCY=1), and three HAProxy instances with deploy/haproxy/haproxy.cfg in front of
  1, 2 and 3 of them (only the server lines differ). wrk (``-t1``, bench/wrk/post.lua) sends one
  digits row per request to ``/v1/models/m01@production/predict`` at 16 connections, for
  ``--seconds`` after a 2 s warm-up, straight to one replica and through each balancer, and at
  one connection straight and through the balancer of one replica, in turn, ``--rounds`` times;
  the report gives the median requests/s, p50 and p99.
* Warm-up: ``backprop api`` started anew with one worker process (WEB_CONCURRENCY=1, so that
  every request below reaches the same process), with the default warm-up (the 20 aliased
  models) and with none (WARM_MODELS_MAX=0), in turn, ``--rounds`` times: seconds from the
  process's start to ``/health/ready`` answering 200 (polled every 20 ms), then the time of
  the first request to ``m01@production`` (a warmed model when warm-up is on), of the first
  request to ``cold`` (never warmed), and of a second request to ``m01@production`` (the steady
  state).
"""

import argparse
import json
import os
import shutil
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

from bench.serving import Request, WrkResult, free_port, relu_network, require_wrk, run_wrk
from service.datasets.samples import load_sample

REPO = Path(__file__).resolve().parents[1]
HAPROXY_CONFIG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
CONNECTIONS = 16
ALIASED = [f"m{n:02d}" for n in range(1, 21)]
NETWORK = relu_network(512, 512)


def say(message: str) -> None:
    print(f"[bench.balancer] {message}", file=sys.stderr, flush=True)


def loopback_config(ports: list[int]) -> str:
    """deploy/haproxy/haproxy.cfg with one server line per local replica in place of the
    server-template that finds docker-compose's containers (tests/integration/test_balancer.py
    runs it too)."""
    text = HAPROXY_CONFIG.read_text()
    (template,) = [
        line for line in text.splitlines() if line.lstrip().startswith("server-template")
    ]
    servers = [f"    server api{n} 127.0.0.1:{port}" for n, port in enumerate(ports, 1)]
    return text.replace(template, "\n".join(servers))


def base_env(folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder / 'backprop.sqlite'}",
        "BROKER_URL": f"sqla+sqlite:///{folder / 'broker.sqlite'}",
        "AUTH": "off",
        "ACCESS_LOG": "off",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT": "off",
        "PREDICT_RATE_LIMIT": "off",
        "PREDICTION_LOG": "off",
        "DRAIN_SECONDS": "0",
    }


def trained_models(folder: Path, env: dict[str, str]) -> None:
    """m01..m20 under ``production``, and ``cold`` under no alias, in the SQLite database."""
    from service.api.app import create_app
    from service.db.session import make_session_factory
    from service.settings import Settings
    from worker.training import run_training

    subprocess.run(
        [sys.executable, "-m", "service.commands.cli", "db", "upgrade"], env=env, check=True
    )
    settings = Settings(database_url=env["DATABASE_URL"], broker_url=env["BROKER_URL"])
    client = create_app(settings).test_client()
    sessions = make_session_factory(settings.database_url)
    dataset = client.post("/v1/datasets", json={"builtin": "digits"}).get_json()
    training = {"epochs": 1, "batch_size": 64, "seed": 1}
    for name in [*ALIASED, "cold"]:
        body = {"dataset_id": dataset["id"], "network": NETWORK, "training": training}
        job = client.post("/v1/jobs", json={**body, "model_name": name}).get_json()
        run_training(sessions, job["id"])
        status = client.get(f"/v1/jobs/{job['id']}").get_json()["status"]
        if status != "succeeded":
            raise RuntimeError(f"training {name} ended {status}")
        if name != "cold":
            moved = client.put(f"/v1/models/{name}/aliases/production", json={"version": 1})
            assert moved.status_code == 200, moved.get_json()


def start_api(env: dict[str, str], port: int, log: Path, **settings: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "service.commands.cli", "api"],
        env={**env, "PORT": str(port), **settings},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=60)


def is_ready(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/health/ready", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def wait_until_ready(base_url: str, timeout: float = 180) -> float:
    started = time.monotonic()
    while not is_ready(base_url):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{base_url} not ready in {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def digits_row_body() -> bytes:
    return json.dumps({"instances": [load_sample("digits").X[0].tolist()]}).encode()


@contextmanager
def balanced(folder: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Three replicas and balancers in front of 1, 2 and 3 of them; yields the base URL of
    each way in ("direct", "haproxy, 1", ...)."""
    ports = [free_port() for _ in range(3)]
    apis = [
        start_api(env, port, folder / f"api-{n}.log", WEB_CONCURRENCY="1")
        for n, port in enumerate(ports, 1)
    ]
    balancers = []
    try:
        for port in ports:
            wait_until_ready(f"http://127.0.0.1:{port}")
        ways = {"direct to one replica": f"http://127.0.0.1:{ports[0]}"}
        for count in (1, 2, 3):
            lb_port = free_port()
            config = folder / f"haproxy-{count}.cfg"
            config.write_text(loopback_config(ports[:count]))
            balancers.append(
                subprocess.Popen(
                    [shutil.which("haproxy"), "-db", "-f", str(config)],
                    env={**os.environ, "LB_BIND": f"127.0.0.1:{lb_port}"},
                    stdout=(folder / f"haproxy-{count}.log").open("w"),
                    stderr=subprocess.STDOUT,
                )
            )
            ways[f"haproxy, {count} replica{'s' if count > 1 else ''}"] = (
                f"http://127.0.0.1:{lb_port}"
            )
        for base_url in ways.values():
            wait_until_ready(base_url)
        yield ways
    finally:
        for process in balancers:
            process.terminate()
            process.wait(timeout=30)
        for api in apis:
            stop(api)


def measure_balancer(folder: Path, env: dict, rounds: int, seconds: int) -> dict[tuple, list]:
    """wrk's figures per (way in, connections): every way at CONNECTIONS, and the first two
    (straight to a replica, through a balancer of one) at one connection too, where the
    difference is the balancer's own cost per request."""
    results: dict[tuple[str, int], list[WrkResult]] = {}
    body = digits_row_body()
    with balanced(folder, env) as ways:
        runs = [(way, CONNECTIONS) for way in ways] + [(way, 1) for way in list(ways)[:2]]
        for round_number in range(1, rounds + 1):
            for way, connections in runs:
                say(f"round {round_number}: {way}, {connections} connection(s)")
                url = f"{ways[way]}/v1/models/m01@production/predict"
                request = Request("ours", way, url, body)
                run_wrk(request, connections, 2, folder)
                figures = run_wrk(request, connections, seconds, folder)
                results.setdefault((way, connections), []).append(figures)
    return results


def first_request_seconds(base_url: str, reference: str, body: bytes) -> float:
    started = time.monotonic()
    response = requests.post(
        f"{base_url}/v1/models/{reference}/predict",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    took = time.monotonic() - started
    response.raise_for_status()
    return took


WARM_UP_MODES = {
    "warm-up on (20 aliased models)": {},
    "warm-up off (WARM_MODELS_MAX=0)": {"WARM_MODELS_MAX": "0"},
}
# What a fresh server is asked after it is ready, in this order.
FIRST_REQUESTS = {"m01": "m01@production", "cold": "cold", "m01 again": "m01@production"}


def measure_warm_up(folder: Path, env: dict, rounds: int) -> dict[str, dict[str, list[float]]]:
    body = digits_row_body()
    figures: dict[str, dict[str, list[float]]] = {}
    for round_number in range(1, rounds + 1):
        for mode, settings in WARM_UP_MODES.items():
            say(f"round {round_number}: {mode}")
            port = free_port()
            started = time.monotonic()
            log = folder / "warm-up.log"
            api = start_api(env, port, log, WEB_CONCURRENCY="1", **settings)
            row = figures.setdefault(mode, {"ready": [], **{key: [] for key in FIRST_REQUESTS}})
            try:
                base_url = f"http://127.0.0.1:{port}"
                wait_until_ready(base_url)
                row["ready"].append(time.monotonic() - started)
                for key, reference in FIRST_REQUESTS.items():
                    row[key].append(first_request_seconds(base_url, reference, body))
            finally:
                stop(api)
    return figures


def report(balancer: dict[tuple, list[WrkResult]], warm_up: dict, rounds: int, seconds: int) -> str:
    lines = [
        "`/v1/models/m01@production/predict`, one digits row (64-512-512-10), wrk -t1,"
        f" {seconds} s per run, median of {rounds} interleaved rounds; each replica one worker"
        " process:",
        "",
        "| way in | connections | requests/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for (way, connections), runs in balancer.items():
        rps = statistics.median(run.requests_per_second for run in runs)
        p50 = statistics.median(run.p50_ms for run in runs)
        p99 = statistics.median(run.p99_ms for run in runs)
        errors = sum(run.errors for run in runs)
        lines.append(f"| {way} | {connections} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {errors} |")
    lines += [
        "",
        f"`backprop api` (one process) started anew, median of {rounds} interleaved rounds:",
        "",
        "| | start to ready, s | first request to m01@production, ms | then to cold, ms"
        " | then m01@production again, ms |",
        "|---|---|---|---|---|",
    ]
    for mode, row in warm_up.items():
        ready = statistics.median(row["ready"])
        ms = [statistics.median(row[key]) * 1000 for key in FIRST_REQUESTS]
        lines.append(f"| {mode} | {ready:.2f} | {ms[0]:.1f} | {ms[1]:.1f} | {ms[2]:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args(argv)
    require_wrk()
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy missing: apt-get install -y haproxy")
    with tempfile.TemporaryDirectory(prefix="bench-balancer-") as name:
        folder = Path(name)
        env = base_env(folder)
        say("training 21 models")
        trained_models(folder, env)
        balancer = measure_balancer(folder, env, args.rounds, args.seconds)
        warm_up = measure_warm_up(folder, env, args.rounds)
    print(report(balancer, warm_up, args.rounds, args.seconds))


if __name__ == "__main__":
    main()
