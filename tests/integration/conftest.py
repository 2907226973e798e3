"""A real stack per backend: `backprop db upgrade`, `backprop api` (Granian), two
`backprop worker` processes and `backprop dispatcher`, driven over HTTP.

Backends: "embedded" (SQLite + kombu's SQLAlchemy transport on a SQLite file, the defaults) and
"postgres" (a throwaway PostgreSQL database + Redis); and one stack with AUTH=required for every
test that needs keys (``secured``).

Each stack starts once per session and test process. Under pytest-xdist (``make test``:
``--dist loadgroup``) the tests of one stack are one ``xdist_group``, so that a single worker
starts it, and stacks that share no state run side by side. Every test that starts or uses a live
stack is marked ``live``: ``make test-fast`` leaves them out.
"""

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from service.commands.supervisor import LocalStack
from tests.conftest import flushed, redis_db_url, throwaway_database
from tests.factories import free_port

BACKPROP = str(Path(sys.executable).parent / "backprop")
N_WORKERS = 2
FINISHED = {"succeeded", "failed", "cancelled", "pruned"}
# The Redis dbs (tests/conftest.py's redis_db_url) of this xdist worker's stacks: role 0 is the
# in-process tests'.
POSTGRES_STACK_REDIS_DB, SECURED_STACK_REDIS_DB = 1, 2
# How long a stack, or an API process a test starts of its own, may take to answer before the
# test errors: a deadline for one that never comes up, not a measure (a passing run never waits
# it out). `make test` starts three stacks at once beside the in-process tests, and on a loaded
# machine their processes' imports took over 60 s (LocalStack's default) at load 20 to 25.
START_DEADLINE_SECONDS = 240


def in_own_worker(group: str) -> list[pytest.MarkDecorator]:
    """The marks of the tests of one stack: live, and run by one xdist worker."""
    return [pytest.mark.live, pytest.mark.xdist_group(group)]


# The backends of ``stack``. A module or test on one backend only: ``ON_EMBEDDED``.
STACK_BACKENDS = [
    pytest.param(name, marks=in_own_worker(f"{name}-stack")) for name in ("embedded", "postgres")
]
ON_EMBEDDED = pytest.mark.parametrize("stack", STACK_BACKENDS[:1], indirect=True)
ON_POSTGRES = pytest.mark.parametrize("stack", STACK_BACKENDS[1:], indirect=True)


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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Until pytest-xdist knows pytest 9.2's node ids (pytest-dev/pytest-xdist#1386), the
    ``@group`` it appends to ``item._nodeid`` is lost, and ``--dist loadgroup`` spreads a stack's
    tests over every worker, each starting that stack. Append it where pytest 9.2 keeps the node
    id; where xdist did it (pytest 8), nothing changes."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        suffix = "@" + "_".join(sorted({mark.args[0] for mark in item.iter_markers("xdist_group")}))
        if suffix != "@" and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            item._id = type(item._id).parse(item.nodeid + suffix)


@pytest.fixture(scope="session")
def postgres_url():
    """Overrides the root fixture: a database of the stacks' own, since in the same session the
    in-process tests truncate every table of the root one before each test."""
    yield from throwaway_database()


@pytest.fixture(scope="session")
def redis_url():
    """Overrides the root fixture (the db the in-process tests flush): the postgres stack's
    broker."""
    yield flushed(redis_db_url(POSTGRES_STACK_REDIS_DB))


def run_stack(environment: dict[str, str], logs: Path, worker_args: tuple[str, ...] = ()):
    """Migrate, start the API and the workers (``worker_args`` on their command line), yield the
    Stack, stop everything."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        # The tests poll and fire requests as fast as they can, all from 127.0.0.1: limits
        # that still run but that none of them reach (tests/service/api/test_rate_limits.py tests
        # the limits themselves).
        "RATE_LIMIT": "100000/second",
        "PREDICT_RATE_LIMIT": "100000/second",
        # Webhook receivers of the tests listen on loopback; retries and a lost attempt's lease
        # kept short (tests/integration/test_webhooks.py).
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_BACKOFF_SECONDS": "0.2",
        "WEBHOOK_TIMEOUT_SECONDS": "1",
        "WEBHOOK_CONCURRENCY": "2",
        **environment,
    }
    subprocess.run([BACKPROP, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=logs)
    stack = Stack(f"http://127.0.0.1:{port}", logs)
    with LocalStack(env, workers=N_WORKERS, logs=logs, worker_args=worker_args) as processes:
        try:
            processes.wait_until_ready(stack.base_url, START_DEADLINE_SECONDS)
        except TimeoutError as error:
            raise AssertionError(f"{error}\n{stack.log_tail()}") from None
        yield stack


@pytest.fixture(scope="session", params=STACK_BACKENDS)
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


# One parameter: its marks reach every test that uses the stack, in whichever module.
@pytest.fixture(scope="session", params=[pytest.param("auth", marks=in_own_worker("secured"))])
def secured(tmp_path_factory):
    """The stack with AUTH=required (PostgreSQL + Redis), trusting one reverse proxy (the
    dashboard's test puts nginx in front; without X-Forwarded headers nothing changes), and the
    environment its `backprop keys` commands need."""
    logs = tmp_path_factory.mktemp("secured")
    for database_url in throwaway_database():
        environment = {
            "DATABASE_URL": database_url,
            "BROKER_URL": flushed(redis_db_url(SECURED_STACK_REDIS_DB)),
            "AUTH": "required",
            "TRUSTED_PROXIES": "1",
        }
        for stack in run_stack(environment, logs):
            yield stack, {**os.environ, **environment}
