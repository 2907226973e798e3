"""A real stack per backend: `backprop db upgrade`, `backprop api` (gunicorn), two
`backprop worker` processes and `backprop dispatcher`, driven over HTTP.

Backends: "embedded" (SQLite + kombu's SQLAlchemy transport on a SQLite file, the defaults) and
"postgres" (a throwaway PostgreSQL database + Redis).
"""

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests

from service.commands.supervisor import LocalStack
from tests.conftest import POSTGRES_ADMIN, unavailable
from tests.factories import free_port

BACKPROP = str(Path(sys.executable).parent / "backprop")
N_WORKERS = 2
FINISHED = {"succeeded", "failed", "cancelled", "pruned"}


@dataclass
class Stack:
    """An HTTP client for the running processes of one backend, and their logs."""

    base_url: str
    logs: Path
    http: requests.Session = field(default_factory=requests.Session)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.base_url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.http.post(self.base_url + path, timeout=60, **kwargs)

    def create(self, path: str, expected_status: int, **kwargs) -> dict:
        response = self.post(path, **kwargs)
        assert response.status_code == expected_status, response.text
        return response.json()

    def wait_for_job(self, job_id: int, timeout: float = 120) -> dict:
        """Poll the job until it finishes; answers other than 200 (a database restarting) and
        refused connections are polled through."""
        deadline = time.monotonic() + timeout
        job = {"status": "unknown"}
        while time.monotonic() < deadline:
            try:
                response = self.get(f"/v1/jobs/{job_id}")
            except requests.ConnectionError:
                response = None
            if response is not None and response.status_code == 200:
                job = response.json()
                if job["status"] in FINISHED:
                    return job
            time.sleep(0.1)
        raise AssertionError(
            f"job {job_id} still {job['status']} after {timeout} s\n{self.log_tail()}"
        )

    def worker_logs(self) -> str:
        return "".join(path.read_text() for path in sorted(self.logs.glob("worker-*.log")))

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-lines:])
            for path in sorted(self.logs.glob("*.log"))
        )


def admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(POSTGRES_ADMIN, autocommit=True)
    except psycopg.OperationalError as error:
        unavailable("PostgreSQL on 127.0.0.1:5432", error)


def throwaway_database():
    """Yield the URL of a new PostgreSQL database, dropped afterwards.

    Each statement gets a connection of its own: test_faults restarts the server in between.
    """
    name = f"backprop_test_{secrets.token_hex(4)}"
    with admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin_connection() as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url():
    """Overrides the root fixture for the integration tests: its connection would not survive
    the PostgreSQL restart of test_faults."""
    yield from throwaway_database()


def run_stack(environment: dict[str, str], logs: Path, worker_args: tuple[str, ...] = ()):
    """Migrate, start the API and the workers (``worker_args`` on their command line), yield the
    Stack, stop everything."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        # The tests poll and fire requests as fast as they can, all from 127.0.0.1: limits
        # that still run but that none of them reach (tests/service/test_rate_limits.py tests
        # the limits themselves).
        "RATE_LIMIT": "100000/second",
        "PREDICT_RATE_LIMIT": "100000/second",
        **environment,
    }
    subprocess.run([BACKPROP, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=logs)
    stack = Stack(f"http://127.0.0.1:{port}", logs)
    with LocalStack(env, workers=N_WORKERS, logs=logs, worker_args=worker_args) as processes:
        try:
            processes.wait_until_ready(stack.base_url)
        except TimeoutError as error:
            raise AssertionError(f"{error}\n{stack.log_tail()}") from None
        yield stack


@pytest.fixture(scope="session", params=["embedded", "postgres"])
def stack(request, tmp_path_factory):
    logs = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded":
        environment = {
            "DATABASE_URL": f"sqlite:///{logs / 'var' / 'backprop.sqlite'}",
            "BROKER_URL": f"sqla+sqlite:///{logs / 'var' / 'broker.sqlite'}",
        }
    else:
        environment = {
            "DATABASE_URL": request.getfixturevalue("postgres_url"),
            "BROKER_URL": request.getfixturevalue("redis_url"),
        }
    yield from run_stack(environment, logs)
