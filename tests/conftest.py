"""Fixtures shared by every layer: a SQLite database with every table, and for the real services
a throwaway PostgreSQL database and a flushed Redis db.

With CI=true a missing PostgreSQL or Redis fails the test; elsewhere it is skipped.
"""

import os
import secrets

import psycopg
import pytest
import redis

from service.db.models import Base
from service.db.session import make_session_factory
from tests.factories import sqlite_sessions

POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
REDIS_URL = "redis://127.0.0.1:6379/13"


def unavailable(what: str, error: Exception):
    message = f"{what} is not reachable: {error}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


# For a module or test that runs on both databases:
#     pytestmark = pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def sessions(request, tmp_path):
    """Sessions with every table created: on a new SQLite file ``tmp_path / "db.sqlite"``, or,
    for a test parametrized with "postgresql" (``BACKENDS``), on the throwaway PostgreSQL
    database, left empty afterwards."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield sqlite_sessions(tmp_path / "db.sqlite")
        return
    sessions = make_session_factory(request.getfixturevalue("postgres_url"))
    engine = sessions.kw["bind"]
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    yield sessions
    Base.metadata.drop_all(engine)
    engine.dispose()


def database_url(sessions) -> str:
    """The URL of the database ``sessions`` are on, password included."""
    return sessions.kw["bind"].url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a new, empty PostgreSQL database, dropped after the test session."""
    name = f"backprop_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True)
    except psycopg.OperationalError as error:
        unavailable("PostgreSQL on 127.0.0.1:5432", error)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url():
    """A Redis database number of its own, empty before and after the test session."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as error:
        unavailable("Redis on 127.0.0.1:6379", error)
    yield REDIS_URL
    client.flushdb()
    client.close()
