"""`backprop run` with nothing configured: files under ./var/, API and worker; Ctrl-C or a
SIGTERM stops all. `backprop api` alone stops on Ctrl-C too."""

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys

import pytest
import requests

from service.api.server import GRACEFUL_STOP_SECONDS
from tests.factories import free_port, job_body, wait_until
from tests.integration.conftest import START_DEADLINE_SECONDS

pytestmark = pytest.mark.live

SETTINGS_VARIABLES = {"DATABASE_URL", "BROKER_URL", "PORT", "WEB_CONCURRENCY"}


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


def ignore_sigint() -> None:
    """What a non-interactive shell does to a command it starts in the background (``cmd &``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_in_new_session(
    args: list[str], cwd, env: dict, log, ignoring_sigint: bool = False
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "service.commands.cli", *args],
        cwd=cwd,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=ignore_sigint if ignoring_sigint else None,
    )


def embedded_env(port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    env["PORT"] = str(port)
    env["DRAIN_SECONDS"] = "0"  # no load balancer in front: a SIGTERM stops `backprop api` at once
    return env


def wait_until_answering(url: str) -> None:
    wait_until(
        lambda: requests.get(url, timeout=5).ok,
        START_DEADLINE_SECONDS,
        url,
        ignoring=(requests.ConnectionError, requests.Timeout),
    )


START_UP_LINES = """backprop: ready
  Dashboard: {base}/
  API:       {base}  (/v1, /v2)
  Docs:      {base}/docs
  OpenAPI:   {base}/openapi.json
"""

# Under gunicorn, before a worker class of its own, about one Ctrl-C in ten left a worker running.
CTRL_C_ROUNDS = 12
# Rounds at once: each API in a folder of its own, so that their SQLite files are apart.
CTRL_C_AT_ONCE = 4


# Ports tried before a round gives up: free_port's port may be taken again meanwhile.
PORT_ATTEMPTS = 3


def api_listening(folder) -> tuple[subprocess.Popen, int]:
    """`backprop api` in a new session, once its own main process listens, and its port.

    A port free_port() found free may be taken before the API binds it (by another test's
    server, or a round beside this one); that server would answer the health check and the
    Ctrl-C would reach this API still importing. So the API's own "Listening at" line is
    awaited, and an API that could not bind is started again on another port."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port, log = free_port(), folder / f"api-{attempt}.log"
        api = start_in_new_session(["api"], folder, embedded_env(port), log)
        if listens(api, log, port):
            return api, port
        kill_session(api.pid)
    raise AssertionError(f"the API could not listen on any of {PORT_ATTEMPTS} free ports")


def listens(api: subprocess.Popen, log, port: int) -> bool:
    """Whether ``api`` says it listens on ``port``: awaited until it does, or until it ends."""
    listening = f"Listening at: http://127.0.0.1:{port}"
    wait_until(
        lambda: api.poll() is not None or listening in log.read_text(),
        START_DEADLINE_SECONDS,
        f"the API to listen on {port}",
    )
    return api.poll() is None


def serve_then_ctrl_c(folder) -> None:
    folder.mkdir()
    api, port = api_listening(folder)
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/health/live")
        ctrl_c(api.pid)
        assert api.wait(timeout=30) == 0  # a deadlocked worker holds the arbiter for 30 s
        wait_until(lambda: running_processes(api.pid) == [], 10, "the API's workers to exit")
    finally:
        kill_session(api.pid)


def test_api_stops_on_ctrl_c_every_time(tmp_path):
    folders = [tmp_path / f"round-{number}" for number in range(CTRL_C_ROUNDS)]
    with concurrent.futures.ThreadPoolExecutor(CTRL_C_AT_ONCE) as pool:
        # list(): the first round that failed raises here
        list(pool.map(serve_then_ctrl_c, folders))


def test_api_stops_on_ctrl_c_with_an_event_stream_open(tmp_path):
    """A job's event stream holds its request until the job ends (none here: no worker runs
    it). A SIGTERM's graceful stop waits up to GRACEFUL_STOP_SECONDS for such a request;
    Ctrl-C does not, and the stream is cut."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = embedded_env(port)
    upgrade = [sys.executable, "-m", "service.commands.cli", "db", "upgrade"]
    subprocess.run(upgrade, cwd=tmp_path, env=env, check=True, capture_output=True)
    api = start_in_new_session(["api"], tmp_path, env, tmp_path / "api.log")
    try:
        wait_until_answering(f"{base}/health/live")
        dataset = requests.post(f"{base}/v1/datasets", json={"builtin": "xor"}, timeout=10).json()
        job = requests.post(f"{base}/v1/jobs", json=job_body(dataset["id"], 50), timeout=10).json()
        url = f"{base}/v1/jobs/{job['id']}/events"
        with requests.get(url, stream=True, timeout=30) as stream:
            lines = stream.iter_lines(decode_unicode=True)
            assert next(lines) == "event: status"  # the stream is open, the job queued
            ctrl_c(api.pid)
            assert api.wait(timeout=GRACEFUL_STOP_SECONDS - 10) == 0
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                list(lines)
        wait_until(lambda: running_processes(api.pid) == [], 10, "the API's workers to exit")
    finally:
        kill_session(api.pid)


@pytest.mark.parametrize(
    ("stop", "ignoring_sigint"),
    [(ctrl_c, False), (terminate, False), (ctrl_c, True)],
    ids=["ctrl-c", "sigterm", "ctrl-c-after-an-inherited-sigint-ignore"],
)
def test_run_serves_and_trains_with_the_embedded_default_and_stops_all(
    tmp_path, stop, ignoring_sigint
):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "run.log"
    run = start_in_new_session(["run"], tmp_path, embedded_env(port), log, ignoring_sigint)
    try:
        wait_until_answering(f"{base}/health/ready")
        wait_until(lambda: "backprop: ready" in log.read_text(), 10, "the start-up message")
        assert START_UP_LINES.format(base=base) in log.read_text()
        dataset = requests.post(f"{base}/v1/datasets", json={"builtin": "xor"}, timeout=10).json()
        job = requests.post(f"{base}/v1/jobs", json=job_body(dataset["id"], 50), timeout=10).json()
        done = wait_until(
            lambda: (
                requests.get(f"{base}/v1/jobs/{job['id']}", timeout=5).json()["status"]
                == "succeeded"
            ),
            60,
            "the job to succeed",
            ignoring=(requests.ConnectionError, requests.Timeout),
        )
        assert done
        assert (tmp_path / "var" / "backprop.sqlite").exists()
        assert (tmp_path / "var" / "broker.sqlite").exists()
        stop(run.pid)
        assert run.wait(timeout=40) == 0
        assert running_processes(run.pid) == [], log.read_text()[-3000:]
        assert "worker-0 (pid " in log.read_text()  # the grace period names whom it waits for
    finally:
        kill_session(run.pid)


def test_two_api_instances_on_one_host_share_no_control_socket(tmp_path):
    """gunicorn 25+, the API's server before Granian, opened a control socket at one path per
    user by default: a second instance took it over, and stopping that one removed the first
    one's."""
    home = tmp_path / "home"
    env = {key: value for key, value in embedded_env(0).items() if key != "XDG_RUNTIME_DIR"}
    ports = [free_port(), free_port()]
    apis = []
    try:
        for number, port in enumerate(ports):
            instance_env = {**env, "HOME": str(home), "PORT": str(port)}
            log = tmp_path / f"api-{number}.log"
            apis.append(start_in_new_session(["api"], tmp_path, instance_env, log))
            wait_until_answering(f"http://127.0.0.1:{port}/health/live")
        assert not [path for path in home.rglob("*") if path.is_socket()]
        terminate(apis[1].pid)
        assert apis[1].wait(timeout=30) == 0
        assert requests.get(f"http://127.0.0.1:{ports[0]}/health/live", timeout=5).ok
    finally:
        for api in apis:
            kill_session(api.pid)
