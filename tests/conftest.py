"""Fixtures shared by every layer: a SQLite database with every table, and for the real services
a throwaway PostgreSQL database and a flushed Redis db.

Each database's schema is created once per test session; before each test its rows are
reset (SQLite: an empty template restored through sqlite3's backup API; PostgreSQL:
``TRUNCATE ... RESTART IDENTITY CASCADE``), so every test starts on empty tables whose ids
start at 1, as on a new database.

Under pytest-xdist (``make test`` runs both halves in workers) each worker is a test session of
its own, so it has all of these to itself: its SQLite files (``tmp_path_factory`` gives each
worker its own base folder), its PostgreSQL databases (new ones, named after the worker), the
files ``Settings`` would keep under ``./var/``, and its Redis dbs (``redis_db_url``).

With CI=true a missing PostgreSQL or Redis fails the test; elsewhere it is skipped.
"""

import os
import secrets
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass

import psycopg
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

import service.settings
from service.db.models import Base
from service.db.session import make_session_factory
from tests.factories import sqlite_sessions

POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
# Redis has 16 dbs (0 to 15). xdist worker gwN (or a run without xdist, as gw0) owns dbs 3N+1 to
# 3N+3: role 0 for the in-process tests (``redis_url``), roles 1 and 2 for the live stacks
# (tests/integration/conftest.py), so that no two workers, nor the two halves of one session,
# share a db. Three workers take dbs 1 to 9: 0 is left to `make run`, 12, 14 and 15 to the
# benchmarks and `make fuzz`.
REDIS_DBS_PER_WORKER = 3
MAX_XDIST_WORKERS = 3
# A test that left a transaction open must fail the next reset, not hang it.
TRUNCATE_LOCK_TIMEOUT = "10s"


def xdist_worker() -> str:
    """This process's pytest-xdist worker id ("gw0", "gw1"...); "gw0" without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


def redis_db_url(role: int) -> str:
    """The URL of this xdist worker's Redis db number ``role`` (0, 1 or 2)."""
    worker = int(xdist_worker().removeprefix("gw"))
    if worker >= MAX_XDIST_WORKERS:
        pytest.fail(f"{worker + 1} xdist workers: there are Redis dbs for {MAX_XDIST_WORKERS}")
    return f"redis://127.0.0.1:6379/{1 + REDIS_DBS_PER_WORKER * worker + role}"


def flushed(url: str) -> str:
    """``url`` once its Redis db is empty."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as error:
        unavailable("Redis on 127.0.0.1:6379", error)
    finally:
        client.close()
    return url


def unavailable(what: str, error: Exception):
    message = f"{what} is not reachable: {error}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


# For a module or test that runs on both databases:
#     pytestmark = pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
BACKENDS = ["sqlite", "postgresql"]
DATABASE_FIXTURES = {"sqlite": "sqlite_database", "postgresql": "postgres_database"}


@dataclass(frozen=True)
class SharedDatabase:
    """Sessions on a database whose schema outlives the tests, and how to empty it."""

    sessions: sessionmaker[Session]
    reset: Callable[[], None]


def restore_sqlite(template: sqlite3.Connection, path) -> None:
    """Copy ``template`` over the database file at ``path``, through a connection of its own
    (the backup waits for the locks of other connections, which then read the new content)."""
    target = sqlite3.connect(path, timeout=30)
    try:
        template.backup(target)
    finally:
        target.close()


def truncate_all(sessions: sessionmaker[Session]) -> None:
    """Empty every table of the schema and restart its ids."""
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with sessions() as session:
        session.execute(text(f"SET LOCAL lock_timeout = '{TRUNCATE_LOCK_TIMEOUT}'"))
        session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        session.commit()


@pytest.fixture(scope="session", autouse=True)
def own_var_folder(tmp_path_factory):
    """What ``Settings`` keeps under ``./var/`` when no SQLite database says where (the registry
    generation file and the signing secret of an app on PostgreSQL without Redis) goes to a
    folder of this session's: not the checkout's, which `make run` and other xdist workers use
    (another worker's bump would empty this one's caches in the middle of a test)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service.settings, "DEFAULT_VAR_DIR", tmp_path_factory.mktemp("var"))
        yield


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory):
    """One SQLite file for the session, and an empty copy of it kept in memory."""
    path = tmp_path_factory.mktemp("sqlite") / "db.sqlite"
    sessions = sqlite_sessions(path)
    template = sqlite3.connect(":memory:")
    with closing(sqlite3.connect(path)) as created:
        created.backup(template)
    yield SharedDatabase(sessions, lambda: restore_sqlite(template, path))
    sessions.kw["bind"].dispose()
    template.close()


@pytest.fixture(scope="session")
def postgres_database(postgres_url):
    """Every table created once on the throwaway PostgreSQL database."""
    sessions = make_session_factory(postgres_url)
    engine = sessions.kw["bind"]
    Base.metadata.create_all(engine)
    yield SharedDatabase(sessions, lambda: truncate_all(sessions))
    engine.dispose()


@pytest.fixture
def sessions(request):
    """Sessions on a database with every table and no row: SQLite by default, or, for a test
    parametrized with "postgresql" (``BACKENDS``), the throwaway PostgreSQL database."""
    database = request.getfixturevalue(DATABASE_FIXTURES[getattr(request, "param", "sqlite")])
    database.reset()
    return database.sessions


def database_url(sessions) -> str:
    """The URL of the database ``sessions`` are on, password included."""
    return sessions.kw["bind"].url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a new, empty PostgreSQL database, dropped after the test session."""
    yield from throwaway_database()


@pytest.fixture
def empty_postgres_url():
    """URL of a PostgreSQL database of the test's own, with no table: for the migration tests,
    which build the schema themselves (the session's database has every table already)."""
    yield from throwaway_database()


def admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(POSTGRES_ADMIN, autocommit=True)
    except psycopg.OperationalError as error:
        unavailable("PostgreSQL on 127.0.0.1:5432", error)


def throwaway_database():
    """Create a PostgreSQL database, yield its URL, drop it. Its name says which xdist worker
    made it; its random part keeps apart the runs of two checkouts on one server."""
    name = f"backprop_test_{xdist_worker()}_{secrets.token_hex(4)}"
    with admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin_connection() as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url():
    """This xdist worker's Redis db for the in-process tests, empty before and after the
    session."""
    url = flushed(redis_db_url(0))
    yield url
    flushed(url)
