"""Three `backprop api` processes behind a real HAProxy on loopback (issue 27), with
deploy/haproxy/haproxy.cfg as docker-compose runs it (only its server line differs): under a
steady load of predictions one replica is killed with SIGKILL and another stopped with SIGTERM
(it drains), and not one request fails or answers differently.

tests/compose/stack.py runs the same check on the docker-compose stack (docker kill, docker stop).
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from bench.balancer import loopback_config
from tests.factories import free_port, sqlite_sessions, wait_until
from tests.integration.conftest import BACKPROP
from tests.integration.test_run_command import kill_session, running_processes

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("balancer")]

REPLICAS = 3
# The load: PREDICTIONS at RATE a second, from CLIENTS keep-alive sessions.
PREDICTIONS, RATE, CLIENTS = 400, 40.0, 4
KILLED_AFTER, TERMINATED_AFTER = 80, 160  # predictions sent before each stop
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 2.5, 5.0, 1.9]]


def haproxy() -> str:
    path = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(path):
        message = "haproxy missing: apt-get install haproxy"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def iris_model_behind_an_alias(folder: Path, env: dict) -> list:
    """Migrate the SQLite database, train iris@production in this process (no worker here),
    and return what it predicts for ROWS."""
    from service.api.app import create_app
    from service.settings import Settings
    from tests.service.serving.test_models_evaluate import (
        IRIS_NETWORK,
        iris_csv,
        trained_model,
        upload_csv,
    )

    subprocess.run([BACKPROP, "db", "upgrade"], env=env, check=True, capture_output=True)
    settings = Settings(database_url=env["DATABASE_URL"], broker_url=env["BROKER_URL"])
    client = create_app(settings).test_client()
    sessions = sqlite_sessions(folder / "backprop.sqlite")
    dataset_id = upload_csv(client, iris_csv())
    trained_model(client, sessions, dataset_id, IRIS_NETWORK, epochs=20, model_name="iris")
    client.put("/v1/models/iris/aliases/production", json={"version": 1})
    answer = client.post("/v1/models/iris@production/predict", json={"instances": ROWS})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["predictions"]


def start_api(folder: Path, env: dict, number: int) -> subprocess.Popen:
    log = (folder / f"api-{number}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "service.commands.cli", "api"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def answers(url: str) -> int:
    """The status ``url`` answers a GET with."""
    return requests.get(url, timeout=5).status_code


def send_predictions(base_url: str, started: float, numbers: range, results: dict) -> None:
    """Predictions ``numbers`` (one keep-alive session), each at its time of the fixed rate:
    ``results[number]`` is the predictions answered or what went wrong."""
    with requests.Session() as http:
        for number in numbers:
            time.sleep(max(0.0, started + number / RATE - time.monotonic()))
            url = f"{base_url}/v1/models/iris@production/predict"
            try:
                response = http.post(url, json={"instances": ROWS}, timeout=30)
            except requests.RequestException as error:
                results[number] = repr(error)
                continue
            ok = response.status_code == 200
            results[number] = response.json()["predictions"] if ok else response.text


@pytest.fixture
def balanced(tmp_path):
    """Three replicas on one SQLite database, ready, behind HAProxy; yields the balancer's
    URL, the replicas and their ports, and what the model answers."""
    program = haproxy()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'backprop.sqlite'}",
        "BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        "WEB_CONCURRENCY": "1",
        "RATE_LIMIT": "100000/second",
        "PREDICT_RATE_LIMIT": "100000/second",
        "TRUSTED_PROXIES": "1",
        # Three processes writing one SQLite file would take turns on its lock: not tested here.
        "PREDICTION_LOG": "off",
    }
    env.pop("DRAIN_SECONDS", None)  # the default of `backprop api`, which the config assumes
    expected = iris_model_behind_an_alias(tmp_path, env)
    ports = [free_port() for _ in range(REPLICAS)]
    apis = [start_api(tmp_path, {**env, "PORT": str(p)}, n) for n, p in enumerate(ports, 1)]
    lb_port = free_port()
    (tmp_path / "haproxy.cfg").write_text(loopback_config(ports))
    lb_env = {**os.environ, "LB_BIND": f"127.0.0.1:{lb_port}"}
    lb = None
    try:
        for port in ports:
            url = f"http://127.0.0.1:{port}/health/ready"
            wait_until(
                lambda u=url: answers(u) == 200, 60, url, ignoring=(requests.RequestException,)
            )
        # Started once every replica is ready, HAProxy starts them all in the rotation.
        with (tmp_path / "haproxy.log").open("w") as log:
            lb = subprocess.Popen(
                [program, "-db", "-f", str(tmp_path / "haproxy.cfg")],
                env=lb_env,
                stdout=log,
                stderr=log,
            )
        base_url = f"http://127.0.0.1:{lb_port}"
        wait_until(
            lambda: answers(f"{base_url}/health/live") == 200,
            30,
            "haproxy",
            ignoring=(requests.RequestException,),
        )
        yield base_url, apis, ports, expected
    finally:
        if lb is not None:
            lb.terminate()
            lb.wait(timeout=30)
        for api in apis:
            kill_session(api.pid)


def test_a_killed_and_a_drained_replica_lose_no_request(balanced, tmp_path):
    base_url, apis, ports, expected = balanced
    for number in range(1, REPLICAS + 1):  # each warmed the aliased model before it was ready
        assert "warm-up: 1 models loaded" in (tmp_path / f"api-{number}.log").read_text()
    results: dict[int, object] = {}
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        sent = [
            pool.submit(
                send_predictions, base_url, started, range(n, PREDICTIONS, CLIENTS), results
            )
            for n in range(CLIENTS)
        ]
        wait_until(lambda: len(results) >= KILLED_AFTER, 60, f"{KILLED_AFTER} predictions")
        os.killpg(apis[0].pid, signal.SIGKILL)
        wait_until(lambda: len(results) >= TERMINATED_AFTER, 60, f"{TERMINATED_AFTER} predictions")
        apis[1].send_signal(signal.SIGTERM)
        for future in sent:
            future.result()
    assert apis[1].wait(timeout=40) == 0
    wait_until(lambda: running_processes(apis[1].pid) == [], 10, "the drained replica to exit")
    failed = {number: result for number, result in results.items() if result != expected}
    assert len(results) == PREDICTIONS and failed == {}, failed
    # The balancer took the killed one out when it refused connections, and the drained one
    # when its /health/ready answered 503: before it stopped taking connections.
    balancer_log = (tmp_path / "haproxy.log").read_text()
    assert "Server api/api1 is DOWN, reason: Layer4 connection problem" in balancer_log
    assert "Server api/api2 is DOWN, reason: Layer7 wrong status, code: 503" in balancer_log
