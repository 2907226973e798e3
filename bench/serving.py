"""Serving benchmark (issue 9, "Speed"): our API against MLflow's scoring server, under wrk.

    python -m bench.serving                        # the embedded default, as `make run` starts it
    python -m bench.serving --database postgres    # PostgreSQL 127.0.0.1:5432 + Redis :6379
    python -m bench.serving --setup-mlflow         # only create MLflow's venv, then exit

Prerequisites (nothing is installed at import):

* wrk, Debian's package: ``apt-get update && apt-get install -y wrk`` (as root);
* MLflow in a venv of its own, so that its pins never move ours: ``--mlflow-venv`` (default
  ``var/mlflow-venv``, git-ignored). When it has no ``bin/mlflow`` the benchmark creates it with
  ``python -m venv`` and ``pip install 'mlflow==3.17.*' scikit-learn`` (once, a few minutes).

It starts our API, one worker and the dispatcher as `make run` does (``LocalStack``; Granian
with its default 2 processes) on a throwaway database: SQLite and the file broker in a temporary
folder, or with ``--database postgres`` a new PostgreSQL database (dropped afterwards) and Redis
db 14 (flushed). Through the API and the worker it trains two models, which it registers under
a name with the alias ``production`` when the registry exists:

* digits, 64-64-10, on the built-in data set;
* 784-256-128-10 on the synthetic rows of bench/workloads.py (``--rows``, stored straight into
  the database), 2 epochs: serving is measured, not accuracy.

For each it builds the same network as a scikit-learn MLPClassifier (bench/mlflow_peer.py, run
by MLflow's Python: our mean and scale in a StandardScaler, our weights from
``/v1/models/{id}/weights``, checked against our probabilities within 1e-6), saves it with
``mlflow.sklearn.save_model`` (``predict_proba``, so both servers answer probabilities) and
serves it with ``mlflow models serve --env-manager local``, with ``-w 1`` (3.17's default) and
``-w 2``, one server at a time; the better of the two is MLflow's figure.

wrk (``-t1``: one thread, leaving the other core to the servers; bench/wrk/post.lua) then sends
one row per request over loopback for ``--seconds``, after a ``--warmup`` run, at 1 and 16
connections, to our ``/v1/models/{id}/predict``, ``/v1/models/{name}@production/predict`` and
``/v2/models/{name}/infer`` (JSON body) and to MLflow's ``/invocations`` (``{"inputs": [row]}``).
A request that does not answer 200 to a probe is reported "n/a" with the reason (the registry
and /v2 arrive with issue 9). Then big bodies on the 784 model, timed by this process (requests,
the answer read but not decoded), best of ``--repeats`` rounds in which they take turns: 10,000
and 1,000 rows through ``/v2`` infer in the binary tensor extension and as JSON, against
model_core's ``predict_with_proba`` (the forward pass the server runs) called in this process.

It prints Markdown tables for docs/benchmarks.md, with the issue's targets met or not.
"""

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psycopg
import redis
import requests

from bench.server_cpu import cpu_seconds, server_processes
from bench.service import UNLIMITED, Client, store_dataset
from bench.workloads import synthetic_workloads
from model_core import Model
from service.commands.supervisor import LocalStack
from service.datasets.samples import load_sample
from service.db import records
from service.db.migrate import upgrade
from service.db.session import make_session_factory
from service.settings import Settings, create_sqlite_folders

REPO = Path(__file__).resolve().parents[1]
POST_LUA = Path(__file__).with_name("wrk") / "post.lua"
PEER_SCRIPT = Path(__file__).with_name("mlflow_peer.py")
MLFLOW_REQUIREMENTS = ["mlflow==3.17.*", "scikit-learn"]
POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
REDIS_URL = "redis://127.0.0.1:6379/14"  # tests use 1 to 9, bench.service 12
ALIAS = "production"
CONNECTIONS = (1, 16)
BIG_ROWS, SMALL_ROWS = 10_000, 1_000
# wrk prints latencies as 812.00us, 1.20ms, 2.00s, 1.00m
MILLISECONDS_PER_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


# --- Prerequisites --------------------------------------------------------------------------


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get update && apt-get install -y wrk (as root)")


def ensure_mlflow_venv(venv: Path) -> Path:
    """The venv's Python, after creating the venv with MLflow when it has no ``bin/mlflow``.

    A venv of its own, never ours: MLflow pins packages (numpy, scikit-learn...) of its own.
    """
    if not (venv / "bin" / "mlflow").exists():
        print(f"creating {venv}: pip install {' '.join(MLFLOW_REQUIREMENTS)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, *MLFLOW_REQUIREMENTS], check=True)
    return venv / "bin" / "python"


def say(message: str) -> None:
    """Progress on stderr, so that stdout holds the report alone."""
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- The service on a throwaway database ----------------------------------------------------


@contextmanager
def embedded_database(folder: Path) -> Iterator[dict[str, str]]:
    """SQLite and kombu's SQLAlchemy transport, as files in ``folder``: `make run`'s default."""
    yield {
        "DATABASE_URL": f"sqlite:///{folder / 'backprop.sqlite'}",
        "BROKER_URL": f"sqla+sqlite:///{folder / 'broker.sqlite'}",
    }


@contextmanager
def postgres_database(
    _folder: Path, redis_url: str = REDIS_URL, label: str = "serving"
) -> Iterator[dict[str, str]]:
    """A new PostgreSQL database (dropped afterwards) and a Redis db, by default 14 (flushed
    before and after); ``label`` in the database's name tells two of one process apart."""
    name = f"backprop_bench_{label}_{os.getpid()}"
    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield {
                "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                "BROKER_URL": redis_url,
            }
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            broker.flushdb()


DATABASES = {"embedded": embedded_database, "postgres": postgres_database}


@contextmanager
def running_service(
    database: str,
    folder: Path,
    changes: dict[str, str] | None = None,
    workers: int = 1,
    tree: Path | None = None,
    **database_options: str,
) -> Iterator[tuple[Client, Settings]]:
    """Our API (Granian, 2 processes), ``workers`` workers and the dispatcher, as `make run`
    starts them, on a migrated throwaway database; children's logs in ``folder``. Without keys
    and rate limits (issue 9's targets are stated so) unless ``changes`` to the environment say
    so. ``tree``: another checkout of the code (a before tree), whose own migrations and
    processes run instead of this one's."""
    with DATABASES[database](folder, **database_options) as urls:
        port = free_port()
        env = {
            **os.environ,
            **urls,
            "PORT": str(port),
            "AUTH": "off",
            **UNLIMITED,
            **(changes or {}),
        }
        settings = create_sqlite_folders(Settings.from_env(env))
        base_url = f"http://127.0.0.1:{port}"
        with code_of(tree, env, settings), LocalStack(env, workers=workers, logs=folder) as stack:
            stack.wait_until_ready(base_url, timeout=180)  # a loaded machine
            yield Client(base_url), settings


@contextmanager
def code_of(tree: Path | None, env: dict[str, str], settings: Settings) -> Iterator[None]:
    """The database migrated by ``tree``'s code (this checkout's when None), and, while
    inside, the children started with ``env`` running that code: ``PYTHONPATH`` and the
    working folder, which `python -m` puts first on ``sys.path``."""
    if tree is None:
        upgrade(settings)
        yield
        return
    env["PYTHONPATH"] = f"{tree}{os.pathsep}{tree / 'client'}"
    backprop = Path(sys.executable).with_name("backprop")
    subprocess.run([str(backprop), "db", "upgrade"], env=env, check=True, cwd=tree)
    here = Path.cwd()
    os.chdir(tree)
    try:
        yield
    finally:
        os.chdir(here)


# --- The models -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchModel:
    """A model trained for the benchmark.

    rows : ndarray (n, n_features), float32, raw rows of its training data (probes, bodies)
    name : its registered name, None when the registry does not exist yet (``why`` says why)
    alias : ``name@production`` once set, else None
    """

    title: str
    model_id: int
    rows: np.ndarray
    name: str | None = None
    alias: str | None = None
    why: str = ""

    @property
    def v2_name(self) -> str:
        """``{name}`` in /v2 paths: the registered name, or the id of an unnamed model."""
        return self.name or str(self.model_id)


def submit_job(client: Client, body: dict) -> tuple[int, str]:
    """Train ``body`` through the API and the worker; the model's id, and why it has no name
    when the API refused ``model_name`` (then the job is sent again without it)."""
    response = client.http.post(client.base_url + "/v1/jobs", json=body, timeout=60)
    why = ""
    if response.status_code == 422 and "model_name" in response.text:
        why = f"POST /v1/jobs refused model_name: {response.text.strip()[:120]}"
        body = {key: value for key, value in body.items() if key != "model_name"}
        response = client.http.post(client.base_url + "/v1/jobs", json=body, timeout=60)
    response.raise_for_status()
    job = client.wait_for(response.json()["id"], {"succeeded"}, poll_seconds=0.2)
    return job["model_id"], why


def set_alias(client: Client, model_id: int, name: str) -> tuple[str | None, str]:
    """Point ``name@production`` at the model's version: the ref, or None and why not."""
    version = client.get(f"/v1/models/{model_id}").get("version")
    if version is None:
        return None, f"GET /v1/models/{model_id} shows no version"
    path = f"/v1/models/{name}/aliases/{ALIAS}"
    response = client.http.put(client.base_url + path, json={"version": version}, timeout=60)
    if not response.ok:
        return None, f"PUT {path} answered {response.status_code}: {response.text.strip()[:120]}"
    return f"{name}@{ALIAS}", ""


def train(
    client: Client,
    title: str,
    name: str,
    dataset_id: int,
    network: dict,
    training: dict,
    rows: np.ndarray,
) -> BenchModel:
    say(f"training {title}")
    body = {
        "dataset_id": dataset_id,
        "network": network,
        "training": training,
        "model_name": name,
    }
    model_id, why = submit_job(client, body)
    if why:
        return BenchModel(title, model_id, rows, why=why)
    alias, why = set_alias(client, model_id, name)
    return BenchModel(title, model_id, rows, name, alias, why)


def relu_network(*hidden: int) -> dict:
    """ReLU hidden layers and a 10-class softmax: what MLPClassifier computes too."""
    layers = [{"units": units, "activation": "relu"} for units in hidden]
    return {"layers": [*layers, {"units": 10, "activation": "softmax"}]}


def train_digits(client: Client) -> BenchModel:
    dataset_id = client.post("/v1/datasets", {"builtin": "digits"})["id"]
    rows = load_sample("digits").X.astype(np.float32)
    training = {"epochs": 5, "seed": 1}
    return train(
        client, "digits 64-64-10", "bench-digits", dataset_id, relu_network(64), training, rows
    )


def train_synthetic(client: Client, settings: Settings, n_rows: int) -> BenchModel:
    workload = synthetic_workloads(n_rows, epochs=2)[0]
    dataset_id = store_dataset(settings, workload)
    training = {"epochs": 2, "batch_size": 64, "seed": 1}
    return train(
        client,
        "784-256-128-10",
        "bench-784",
        dataset_id,
        relu_network(256, 128),
        training,
        workload.X,
    )


# --- MLflow's scoring server ----------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """The model saved by MLflow, and what bench/mlflow_peer.py said: differences, versions."""

    model_dir: Path
    summary: dict


def our_probabilities(client: Client, model: BenchModel, rows: np.ndarray) -> np.ndarray:
    body = {"instances": rows.tolist()}
    return np.array(client.post(f"/v1/models/{model.model_id}/predict", body)["probabilities"])


def save_peer(client: Client, model: BenchModel, python: Path, folder: Path) -> Peer:
    """Our weights, and our probabilities on 64 rows, to the MLflow venv's Python, which checks
    its MLPClassifier against them and saves it (bench/mlflow_peer.py)."""
    weights_path = folder / f"model-{model.model_id}-weights.npz"
    check_path = folder / f"model-{model.model_id}-check.npz"
    model_dir = folder / f"model-{model.model_id}-mlflow"
    weights = client.http.get(
        f"{client.base_url}/v1/models/{model.model_id}/weights", params={"format": "npz"}
    )
    weights.raise_for_status()
    weights_path.write_bytes(weights.content)
    rows = model.rows[:64].astype(np.float64)
    np.savez(check_path, rows=rows, probabilities=our_probabilities(client, model, rows))
    command = [str(python), str(PEER_SCRIPT), str(weights_path), str(check_path), str(model_dir)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    if done.returncode != 0:
        raise RuntimeError(f"bench/mlflow_peer.py failed: {done.stderr.strip()[-2000:]}")
    return Peer(model_dir, json.loads(done.stdout.strip().splitlines()[-1]))


@contextmanager
def mlflow_server(python: Path, peer: Peer, workers: list[str], folder: Path) -> Iterator[str]:
    """``mlflow models serve --env-manager local`` on a free port until the block ends; its
    base URL once ``/ping`` answers. It leads a process group of its own (uvicorn's workers
    included), which is stopped as a whole."""
    port = free_port()
    bin_folder = python.parent
    command = [
        str(bin_folder / "mlflow"),
        "models",
        "serve",
        "-m",
        str(peer.model_dir),
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        *workers,
    ]
    env = {**os.environ, "PATH": f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = (folder / f"mlflow-{port}.log").open("w")
    process = subprocess.Popen(
        command, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT, process_group=0
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_for_ping(base_url, process)
        yield base_url
    finally:
        stop_group(process)
        log.close()


def wait_for_ping(base_url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited with {process.returncode}")
        try:
            if requests.get(base_url + "/ping", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base_url}/ping did not answer within {timeout} s")


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group this benchmark started, SIGKILL it if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- Load with wrk --------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One POST that wrk repeats: who answers, what it is called in the table, the body."""

    server: str
    label: str
    url: str
    body: bytes
    content_type: str = "application/json"
    header: str = ""  # one more request header, "Name: value" (an API key)


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx/3xx answers and socket errors (connect, read, write, timeout)
    # CPU milliseconds the server's processes spent per request answered (bench/server_cpu.py)
    server_cpu_ms: float | None = None


def cpu_cell(results: list[WrkResult]) -> str:
    """The median of the rounds' server CPU ms per request, or n/a where none was read."""
    spent = [result.server_cpu_ms for result in results if result.server_cpu_ms is not None]
    return f"{statistics.median(spent):.3f}" if spent else "n/a"


@dataclass
class LoadRow:
    model: str
    request: Request
    connections: int
    result: WrkResult | None = None
    why: str = ""


def milliseconds(value: str, unit: str) -> float:
    return float(value) * MILLISECONDS_PER_UNIT[unit]


def parse_wrk(output: str) -> WrkResult:
    """The figures of ``wrk --latency``'s report."""
    percentiles = {
        int(p): milliseconds(value, unit)
        for p, value, unit in re.findall(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    }
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    bad_status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        requests=int(re.search(r"(\d+) requests in", output)[1]),
        errors=(sum(map(int, socket_errors.groups())) if socket_errors else 0)
        + (int(bad_status[1]) if bad_status else 0),
    )


def run_wrk(request: Request, connections: int, seconds: int, folder: Path) -> WrkResult:
    body_file = folder / f"body-{hashlib.sha1(request.body).hexdigest()[:12]}.bin"
    body_file.write_bytes(request.body)
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(POST_LUA),
        request.url,
        "--",
        str(body_file),
        request.content_type,
        *([request.header] if request.header else []),
    ]
    server = server_processes(urlsplit(request.url).port)
    cpu_before = cpu_seconds(server)
    done = subprocess.run(command, capture_output=True, text=True)
    cpu_spent = cpu_seconds(server) - cpu_before
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    result = parse_wrk(done.stdout)
    if not server or not result.requests:
        return result
    return replace(result, server_cpu_ms=cpu_spent * 1000 / result.requests)


def probe(request: Request) -> str:
    """ "" when one request answers 200; otherwise why not, for the table's n/a."""
    headers = {"Content-Type": request.content_type}
    if request.header:
        name, _, value = request.header.partition(": ")
        headers[name] = value
    try:
        response = requests.post(request.url, data=request.body, timeout=30, headers=headers)
    except requests.ConnectionError as error:
        return f"{request.label}: {error}"
    if response.status_code == 200:
        return ""
    return f"{request.label} answered {response.status_code}: {response.text.strip()[:120]}"


def measure(model: str, request: Request, args: argparse.Namespace, folder: Path):
    """wrk at each connection count after a warm-up at the highest, or n/a rows with the probe's
    reason."""
    rows = [LoadRow(model, request, connections) for connections in CONNECTIONS]
    why = probe(request)
    if why:
        for row in rows:
            row.why = why
        return rows
    say(f"wrk: {model}, {request.server}, {request.label}")
    if args.warmup > 0:
        run_wrk(request, max(CONNECTIONS), args.warmup, folder)
    for row in rows:
        row.result = run_wrk(request, row.connections, args.seconds, folder)
    return rows


def one_row_bodies(row: np.ndarray) -> dict[str, bytes]:
    values = row.astype(np.float64).tolist()
    v2 = {
        "inputs": [{"name": "input", "shape": [1, len(values)], "datatype": "FP32", "data": values}]
    }
    return {
        "v1": json.dumps({"instances": [values]}).encode(),
        "v2": json.dumps(v2).encode(),
        "mlflow": json.dumps({"inputs": [values]}).encode(),
    }


def our_requests(base_url: str, model: BenchModel) -> list[Request]:
    """Ours by id, by ``name@production`` (once the registry gave one) and on /v2."""
    bodies = one_row_bodies(model.rows[0])
    refs = [("id", str(model.model_id))] + ([("name@alias", model.alias)] if model.alias else [])
    return [
        *(
            Request(
                "ours", f"/v1 predict, {kind}", f"{base_url}/v1/models/{ref}/predict", bodies["v1"]
            )
            for kind, ref in refs
        ),
        Request(
            "ours", "/v2 infer, JSON", f"{base_url}/v2/models/{model.v2_name}/infer", bodies["v2"]
        ),
    ]


def measure_ours(client: Client, model: BenchModel, args, folder: Path) -> list[LoadRow]:
    rows = []
    for request in our_requests(client.base_url, model):
        rows += measure(model.title, request, args, folder)
    if model.alias is None:
        unnamed = Request("ours", "/v1 predict, name@alias", "", b"")
        rows += [LoadRow(model.title, unnamed, c, why=model.why) for c in CONNECTIONS]
    return rows


# 3.17's default is one uvicorn worker (``mlflow models serve --help``); with two it stalls about
# 40 ms on every keep-alive request (Nagle's algorithm left on: uvicorn issue 3149).
MLFLOW_WORKERS = {"-w 1 (default)": ["-w", "1"], "-w 2": ["-w", "2"]}


def measure_mlflow(
    python: Path, peer: Peer, model: BenchModel, ours: np.ndarray, args, folder: Path
) -> list[LoadRow]:
    """Each configuration's server alone, checked against our probabilities for the row."""
    rows = []
    body = one_row_bodies(model.rows[0])["mlflow"]
    for configuration, workers in MLFLOW_WORKERS.items():
        with mlflow_server(python, peer, workers, folder) as base_url:
            request = Request(
                f"MLflow {configuration}", "/invocations", base_url + "/invocations", body
            )
            check_mlflow_answer(request, ours)
            rows += measure(model.title, request, args, folder)
    return rows


def check_mlflow_answer(request: Request, ours: np.ndarray) -> None:
    """MLflow's probabilities for the row equal ours within 1e-5 (it computes in float64 from
    JSON, ours in the model's float32), or the comparison would be of different networks."""
    response = requests.post(
        request.url, data=request.body, timeout=30, headers={"Content-Type": request.content_type}
    )
    response.raise_for_status()
    theirs = np.asarray(response.json()["predictions"], dtype=np.float64)
    difference = float(np.max(np.abs(theirs - ours)))
    if difference > 1e-5:
        raise RuntimeError(f"{request.server} answers probabilities {difference:.2e} from ours")


# --- Big bodies: /v2 binary and JSON against model_core in this process ----------------------


def best_seconds(calls: list[Callable[[], object]], repeats: int) -> list[float]:
    """Each call's best time, the calls taking turns round by round so that all see the same
    machine (other processes on two cores move a single run by tens of percent)."""
    best = [float("inf")] * len(calls)
    for _ in range(repeats):
        for index, call in enumerate(calls):
            start = time.perf_counter()
            call()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


OUTPUTS = ("probabilities", "predictions")


def binary_infer_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """The binary tensor extension: a JSON header, then the rows as little-endian float32;
    both outputs asked for in binary too."""
    data = np.ascontiguousarray(x, dtype="<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(data)},
            }
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in OUTPUTS],
    }
    encoded = json.dumps(header).encode()
    headers = {
        "Inference-Header-Content-Length": str(len(encoded)),
        "Content-Type": "application/octet-stream",
    }
    return encoded + data, headers


def json_infer_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """The JSON tensor form, rows flattened as tritonclient sends them."""
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.astype(np.float64).ravel().tolist(),
            }
        ],
        "outputs": [{"name": name} for name in OUTPUTS],
    }
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


def infer_probabilities(response: requests.Response) -> np.ndarray:
    """The ``probabilities`` output of a /v2 answer, JSON or binary, as (n, n_classes)."""
    header_length = response.headers.get("Inference-Header-Content-Length")
    content = response.content
    if header_length is None:
        outputs = response.json()["outputs"]
        output = next(o for o in outputs if o["name"] == "probabilities")
        return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])
    header = json.loads(content[: int(header_length)])
    offset = int(header_length)
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        if output["name"] == "probabilities":
            dtype = {"FP32": "<f4", "FP64": "<f8"}[output["datatype"]]
            array = np.frombuffer(content, dtype, size // np.dtype(dtype).itemsize, offset)
            return array.reshape(output["shape"]).astype(np.float64)
        offset += size
    raise RuntimeError("the /v2 answer has no probabilities output")


@dataclass
class BigBodyRow:
    label: str
    rows: int
    seconds: float | None = None
    why: str = ""

    @property
    def rows_per_second(self) -> float | None:
        return None if self.seconds is None else self.rows / self.seconds


def checked_infer(http: requests.Session, url: str, x: np.ndarray, encode, expected):
    """A call that sends one /v2 infer of ``x`` (the answer read, not decoded) once its first
    answer matched ``expected`` probabilities; or None and why it is n/a."""
    body, headers = encode(x)

    def post() -> requests.Response:
        return http.post(url, data=body, headers=headers, timeout=600)

    first = post()
    if first.status_code != 200:
        return None, f"POST {url} answered {first.status_code}: {first.text.strip()[:120]}"
    difference = float(np.max(np.abs(infer_probabilities(first) - expected)))
    if difference > 1e-5:
        raise RuntimeError(f"/v2 probabilities differ from model_core's by {difference:.2e}")
    return post, ""


def big_bodies(client: Client, settings: Settings, model: BenchModel, repeats: int):
    """For 10,000 and 1,000 rows: model_core in this process, /v2 binary and /v2 JSON, taking
    turns."""
    with make_session_factory(settings.database_url)() as session:
        engine = Model.from_bytes(records.get_model_blob(session, model.model_id))
    url = f"{client.base_url}/v2/models/{model.v2_name}/infer"
    table = []
    for n in (BIG_ROWS, SMALL_ROWS):
        x = model.rows[:n]
        rows = [BigBodyRow("model_core predict_with_proba, in process", n)]
        calls = [lambda x=x: engine.predict_with_proba(x)]
        for label, encode in (("binary", binary_infer_body), ("JSON", json_infer_body)):
            call, why = checked_infer(client.http, url, x, encode, engine.predict_proba(x))
            rows.append(BigBodyRow(f"/v2 infer, {label}", n, why=why))
            calls += [call] if call else []
        timed = [row for row in rows if not row.why]
        for row, seconds in zip(timed, best_seconds(calls, repeats), strict=True):
            row.seconds = seconds
        table += rows
    return table


# --- The report -----------------------------------------------------------------------------


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def figure(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def load_table(rows: list[LoadRow]) -> list[str]:
    lines = [
        "| model | server | request | connections | requests/s | p50 | p99 | errors |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        r = row.result
        cells = (
            ["n/a"] * 4
            if r is None
            else [
                f"{r.requests_per_second:,.0f}",
                f"{r.p50_ms:.2f} ms",
                f"{r.p99_ms:.2f} ms",
                f"{r.errors} of {r.requests:,}",
            ]
        )
        lines.append(
            f"| {row.model} | {row.request.server} | {row.request.label} | "
            f"{row.connections} | {' | '.join(cells)} |"
        )
    return lines


def find(rows: list[LoadRow], model: str, label: str, connections: int, server="ours"):
    for row in rows:
        if (row.model, row.request.server, row.request.label, row.connections) == (
            model,
            server,
            label,
            connections,
        ):
            return row.result
    return None


def best_mlflow(rows: list[LoadRow], model: str) -> tuple[str, WrkResult] | None:
    """MLflow's configuration with the most requests/s at 16 connections."""
    candidates = [
        (row.request.server, row.result)
        for row in rows
        if row.model == model
        and row.request.server.startswith("MLflow")
        and row.connections == max(CONNECTIONS)
        and row.result is not None
    ]
    return max(candidates, key=lambda c: c[1].requests_per_second, default=None)


def load_targets(rows: list[LoadRow], model: str) -> list[tuple[str, str]]:
    """(target, measured and met) for one model; n/a where a request could not be measured."""
    targets = []
    for label in ("/v1 predict, id", "/v2 infer, JSON"):
        single = find(rows, model, label, 1)
        targets.append(
            (
                f"{label}: p50 < 1 ms at 1 connection",
                "n/a" if single is None else f"{single.p50_ms:.2f} ms, {met(single.p50_ms < 1)}",
            )
        )
    by_id, by_alias = (
        find(rows, model, "/v1 predict, id", 1),
        find(rows, model, "/v1 predict, name@alias", 1),
    )
    if by_id is None or by_alias is None:
        targets.append(("name@alias adds < 0.1 ms (p50, 1 connection)", "n/a"))
    else:
        extra = by_alias.p50_ms - by_id.p50_ms
        targets.append(
            ("name@alias adds < 0.1 ms (p50, 1 connection)", f"{extra:+.2f} ms, {met(extra < 0.1)}")
        )
    peer = best_mlflow(rows, model)
    for label in ("/v1 predict, id", "/v2 infer, JSON"):
        loaded = find(rows, model, label, max(CONNECTIONS))
        if loaded is None or peer is None:
            targets.append(
                (f"{label}, 16 connections: >= 2x MLflow's best, p99 < 20 ms, no errors", "n/a")
            )
            continue
        ratio = loaded.requests_per_second / peer[1].requests_per_second
        targets.append(
            (
                f"{label}, 16 connections: >= 2x MLflow's best, p99 < 20 ms, no errors",
                f"{ratio:.2f}x {peer[0]} ({met(ratio >= 2)}), p99 {loaded.p99_ms:.1f} ms "
                f"({met(loaded.p99_ms < 20)}), {loaded.errors} errors ({met(loaded.errors == 0)})",
            )
        )
    return targets


def targets_table(rows: list[LoadRow], models: list[str], big: list[BigBodyRow]) -> list[str]:
    lines = ["| target | " + " | ".join(models) + " |", "| --- |" + " --- |" * len(models)]
    per_model = [load_targets(rows, model) for model in models]
    for index, (target, _) in enumerate(per_model[0]):
        lines.append(f"| {target} | " + " | ".join(t[index][1] for t in per_model) + " |")
    return lines + big_targets(big)


def big_targets(big: list[BigBodyRow]) -> list[str]:
    def seconds(label: str, n: int) -> float | None:
        return next((r.seconds for r in big if r.label == label and r.rows == n), None)

    in_process = seconds("model_core predict_with_proba, in process", BIG_ROWS)
    binary = seconds("/v2 infer, binary", BIG_ROWS)
    share = None if binary is None else in_process / binary
    small_binary, small_json = (
        seconds("/v2 infer, binary", SMALL_ROWS),
        seconds("/v2 infer, JSON", SMALL_ROWS),
    )
    speedup = None if small_binary is None or small_json is None else small_json / small_binary
    return [
        "| 10,000-row /v2 binary infer: >= 50% of model_core in process | | "
        f"{'n/a' if share is None else f'{share:.0%}, {met(share >= 0.5)}'} |",
        "| 1,000 rows: /v2 binary >= 3x faster than JSON | | "
        f"{'n/a' if speedup is None else f'{speedup:.1f}x, {met(speedup >= 3)}'} |",
    ]


def big_body_table(big: list[BigBodyRow], repeats: int) -> list[str]:
    in_process = {row.rows: row.rows_per_second for row in big if "in process" in row.label}
    lines = [
        f"| 784-256-128-10 | rows | seconds (best of {repeats}) | rows/s | of in-process |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in big:
        rate = row.rows_per_second
        share = None if rate is None else rate / in_process[row.rows]
        lines.append(
            f"| {row.label} | {row.rows:,} | {figure(row.seconds, '.4f')} | "
            f"{figure(row.rows_per_second, ',.0f')} | {figure(share, '.0%')} |"
        )
    return lines


def reasons(rows: list[LoadRow], big: list[BigBodyRow]) -> list[str]:
    """Each distinct reason for an n/a, once."""
    seen = dict.fromkeys(r.why for r in [*rows, *big] if r.why)
    return [f"* n/a: {why}" for why in seen]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{os.cpu_count()} cores, {cpu}"


@dataclass
class Run:
    database: str
    seconds: int
    models: list[str] = field(default_factory=list)
    # Other processes on a 2-core machine move every figure: a run on a busy machine shows it.
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])
    versions: dict = field(default_factory=dict)
    load: list[LoadRow] = field(default_factory=list)
    big: list[BigBodyRow] = field(default_factory=list)


def report(run: Run, repeats: int) -> str:
    stamp = datetime.now(UTC).strftime("%d %b %Y, %H:%M UTC")
    versions = ", ".join(f"{name} {version}" for name, version in run.versions.items())
    lines = [
        f"{stamp}, {run.database}, {machine()} (load average {run.load_average:.2f} at the "
        f"start); wrk -t1, {run.seconds} s runs, one row per request; {versions}",
        "",
        *load_table(run.load),
        "",
        *big_body_table(run.big, repeats),
        "",
        *targets_table(run.load, run.models, run.big),
    ]
    notes = reasons(run.load, run.big)
    return "\n".join(lines + ([""] + notes if notes else []))


# --- Main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=sorted(DATABASES), default="embedded")
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (whole seconds)")
    parser.add_argument("--warmup", type=int, default=2, help="wrk seconds before each request")
    parser.add_argument("--repeats", type=int, default=5, help="big bodies: best of this many")
    parser.add_argument("--rows", type=int, default=BIG_ROWS, help="synthetic training rows")
    parser.add_argument("--mlflow-venv", type=Path, default=REPO / "var" / "mlflow-venv")
    parser.add_argument("--setup-mlflow", action="store_true", help="create the venv and exit")
    args = parser.parse_args(argv)
    if args.rows < BIG_ROWS:
        parser.error(f"--rows must be at least {BIG_ROWS}: the big infer sends that many")
    return args


@contextmanager
def work_folder() -> Iterator[Path]:
    """A temporary folder for databases, logs and bodies; kept (and named) when a run fails."""
    folder = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        yield folder
    except BaseException:
        print(f"logs kept in {folder}", file=sys.stderr)
        raise
    shutil.rmtree(folder)


def benchmark(args: argparse.Namespace, python: Path, folder: Path) -> Run:
    run = Run(args.database, args.seconds)
    with running_service(args.database, folder) as (client, settings):
        models = [train_digits(client), train_synthetic(client, settings, args.rows)]
        run.models = [model.title for model in models]
        for model in models:
            say(f"saving {model.title} for MLflow")
            peer = save_peer(client, model, python, folder)
            run.versions = {
                "MLflow": peer.summary["mlflow"],
                "scikit-learn": peer.summary["sklearn"],
            }
            ours = our_probabilities(client, model, model.rows[:1])
            run.load += measure_ours(client, model, args, folder)
            run.load += measure_mlflow(python, peer, model, ours, args, folder)
        say("big bodies")
        run.big = big_bodies(client, settings, models[-1], args.repeats)
    return run


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    python = ensure_mlflow_venv(args.mlflow_venv)
    if args.setup_mlflow:
        return
    require_wrk()
    with work_folder() as folder:
        run = benchmark(args, python, folder)
    print(report(run, args.repeats))


if __name__ == "__main__":
    main()
