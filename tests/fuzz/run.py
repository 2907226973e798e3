"""``make fuzz``: schemathesis with every check against a live stack (API, a real worker, the
dispatcher), on the embedded SQLite backend and on PostgreSQL + Redis.

    python -m tests.fuzz.run [--backend embedded|postgres|both] [--max-examples N] [--seed S]
                             [-- extra schemathesis arguments]

What a schema-valid request may still be refused for (rules OpenAPI cannot express) is listed
per operation in ``schemathesis.toml``. Each backend gets a fresh database (bench.serving's
throwaway ones: a temporary SQLite folder, or a PostgreSQL database dropped afterwards and a
flushed Redis db), and every process started here is stopped, whatever happens.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.serving import DATABASES
from service.commands.supervisor import LocalStack, stop_on_signals
from tests.factories import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SEED_TIMEOUT_SECONDS = 60
FINISHED = {"succeeded", "failed", "cancelled"}


def stack_environment(backend: dict[str, str], port: int) -> dict[str, str]:
    return {
        **os.environ,
        **backend,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "ACCESS_LOG": "off",
        "LOG_LEVEL": "WARNING",
        # Whatever the fuzzer submits trains for a few seconds in a small network, at most.
        "MAX_JOB_SECONDS": "5",
        "MAX_PARAMETERS": "100000",
        # A deterministic pass: whether a request meets a 429 must not depend on how fast the
        # machine sends them (schemathesis sends over 100 a second).
        "RATE_LIMIT": "off",
        "PREDICT_RATE_LIMIT": "off",
    }


def backprop(env: dict[str, str], *args: str) -> str:
    """Run ``backprop ARGS`` to completion and return its stdout."""
    done = subprocess.run(
        [str(BIN / "backprop"), *args], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def auth_headers(env: dict[str, str]) -> list[str]:
    """``-H`` arguments carrying the admin key (id 1) of tenant fuzz, made in the database of
    ``env``. Key 2 is made for ``POST /v1/keys/{key_id}/revoke`` to revoke (schemathesis.toml):
    the fuzzer revoking its own key would leave it nothing but 401s."""
    key = backprop(env, "keys", "create", "--tenant", "fuzz", "--scope", "admin")
    backprop(env, "keys", "create", "--tenant", "fuzz", "--scope", "read")
    return ["-H", f"Authorization: Bearer {key.strip().splitlines()[-1]}"]


XOR_JOB = {
    "dataset_id": 1,
    "model_name": "xor",
    "network": {
        "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "softmax"}]
    },
    "training": {"epochs": 50, "batch_size": "full"},
}


def seed(base_url: str, headers: list[str]) -> None:
    """Data set 1 (xor) and model 1, named xor: ids and names for the fuzzer to find."""
    http = requests.Session()
    http.headers.update(dict(header.split(": ", 1) for header in headers[1::2]))
    http.post(f"{base_url}/v1/datasets", json={"builtin": "xor"}, timeout=30).raise_for_status()
    job = http.post(f"{base_url}/v1/jobs", json=XOR_JOB, timeout=30).json()
    deadline = time.monotonic() + SEED_TIMEOUT_SECONDS
    while job["status"] not in FINISHED and time.monotonic() < deadline:
        time.sleep(0.2)
        job = http.get(f"{base_url}/v1/jobs/{job['id']}", timeout=30).json()
    if job["status"] != "succeeded":
        raise RuntimeError(f"the seed job did not succeed: {job}")


def schemathesis(base_url: str, headers: list[str], args: argparse.Namespace) -> int:
    command = [
        str(BIN / "schemathesis"),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--generation-database",
        "none",
        *headers,
        *args.schemathesis_args,
    ]
    return subprocess.run(command, cwd=ROOT).returncode


@contextmanager
def live_stack(name: str, logs: Path, auth: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The API, one worker and the dispatcher on a migrated throwaway ``name`` database (of
    DATABASES) with ``AUTH=auth``, their logs in ``logs``; yields the API's URL and the stack's
    environment (for ``backprop keys``, which writes to the same database)."""
    with DATABASES[name](logs) as backend:
        port = free_port()
        env = {**stack_environment(backend, port), "AUTH": auth}
        backprop(env, "db", "upgrade")
        base_url = f"http://127.0.0.1:{port}"
        with LocalStack(env, workers=1, logs=logs) as stack:
            stack.wait_until_ready(base_url)
            yield base_url, env


def fuzz_backend(name: str, args: argparse.Namespace) -> int:
    print(f"== schemathesis ({name}) ==", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as folder:
        logs = Path(folder)
        with live_stack(name, logs, auth="required") as (base_url, env):
            headers = auth_headers(env)
            seed(base_url, headers)
            status = schemathesis(base_url, headers, args)
        if status != 0:
            print_logs(logs)
        return status


def print_logs(logs: Path) -> None:
    for path in sorted(logs.glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()[-30:]
        print(f"--- {path.name}", *lines, sep="\n", file=sys.stderr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__)
    parser.add_argument("--backend", choices=[*DATABASES, "both"], default="both")
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("schemathesis_args", nargs="*", help="after --: for schemathesis run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    names = list(DATABASES) if args.backend == "both" else [args.backend]
    failed = [name for name in names if fuzz_backend(name, args) != 0]
    if failed:
        print(f"schemathesis found failures on: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
