"""Engines and sessions from a URL; SQLite gets WAL, a busy timeout and foreign keys.

Nothing here keeps state in a PostgreSQL session beyond a transaction (no ``SET`` but the local
kind, no advisory lock, no ``LISTEN``), so the URL may point at a pooler in transaction mode
(PgBouncer: docs/scaling.md). One thing to say to it: psycopg prepares a statement on the
server after its fifth run on a connection, which a pooler that does not track prepared
statements (PgBouncer before 1.21, or without ``max_prepared_statements``) breaks, as it hands
the next transaction another server connection. ``?prepare_threshold=none`` in the URL turns
that off (a number sets the threshold), as psycopg's parameter of that name does.
"""

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from service.memory import return_freed_memory

SQLITE_BUSY_TIMEOUT_MS = 30_000
# In a SQLite connection's pool record: the PRAGMAs set for as long as it is checked out
# (``set_until_returned``), with the values to restore.
PRAGMAS_TO_RESTORE = "pragmas_to_restore"


def _configure_sqlite_connection(dbapi_connection, _connection_record) -> None:
    """Let readers and a writer work at once (WAL), wait for locks, and enforce foreign keys."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def set_until_returned(connection: Connection, pragma: str, value: int) -> None:
    """Set SQLite's ``pragma`` (a per-connection setting) to ``value`` on ``connection`` for as
    long as it is checked out: its value before is restored when it goes back to the pool."""
    before = connection.exec_driver_sql(f"PRAGMA {pragma}").scalar()
    connection.exec_driver_sql(f"PRAGMA {pragma}={value}")
    connection.connection.info.setdefault(PRAGMAS_TO_RESTORE, {}).setdefault(pragma, before)


def _restore_pragmas(dbapi_connection, connection_record, _reset_state) -> None:
    """A connection goes back to the pool as it was lent: its PRAGMAs restored, and the pages
    a larger page cache held handed back to the system."""
    restore = connection_record.info.pop(PRAGMAS_TO_RESTORE, None)
    if restore:
        for pragma, value in restore.items():
            dbapi_connection.execute(f"PRAGMA {pragma}={value}")
        dbapi_connection.execute("PRAGMA shrink_memory")
        return_freed_memory()


PREPARE_THRESHOLD = "prepare_threshold"


def _prepare_threshold(url: URL) -> tuple[URL, dict]:
    """``url`` without ``?prepare_threshold=``, and that as psycopg's connect argument."""
    threshold = url.query.get(PREPARE_THRESHOLD)
    if threshold is None:
        return url, {}
    value = None if threshold.lower() == "none" else int(threshold)
    return url.difference_update_query([PREPARE_THRESHOLD]), {PREPARE_THRESHOLD: value}


def make_engine(url: str, pre_ping: bool = True) -> Engine:
    """Create an engine for ``url``; connections are checked before use (databases restart)
    unless ``pre_ping`` is False: for callers that retry a transient error anyway (the
    training worker), to whom the check is a round trip on every checkout for nothing."""
    engine_url, connect_args = _prepare_threshold(make_url(url))
    engine = create_engine(engine_url, pool_pre_ping=pre_ping, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "reset", _restore_pragmas)
    return engine


def make_session_factory(url: str, pre_ping: bool = True) -> sessionmaker[Session]:
    """A session factory bound to a new engine for ``url`` (``make_engine``); objects stay
    readable after commit."""
    return sessionmaker(make_engine(url, pre_ping), expire_on_commit=False)
