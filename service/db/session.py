"""Engines and sessions from a URL; SQLite gets WAL, a busy timeout and foreign keys."""

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _configure_sqlite_connection(dbapi_connection, _connection_record) -> None:
    """Let readers and a writer work at once (WAL), wait for locks, and enforce foreign keys."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str, pre_ping: bool = True) -> Engine:
    """Create an engine for ``url``; connections are checked before use (databases restart)
    unless ``pre_ping`` is False: for callers that retry a transient error anyway (the
    training worker), to whom the check is a round trip on every checkout for nothing."""
    engine = create_engine(url, pool_pre_ping=pre_ping)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def make_session_factory(url: str, pre_ping: bool = True) -> sessionmaker[Session]:
    """A session factory bound to a new engine for ``url`` (``make_engine``); objects stay
    readable after commit."""
    return sessionmaker(make_engine(url, pre_ping), expire_on_commit=False)


def create_sqlite_folders(settings: Settings) -> Settings:
    """Create the folders of the embedded SQLite files (database and broker) of ``settings``."""
    for path in settings.sqlite_paths():
        path.parent.mkdir(parents=True, exist_ok=True)
    return settings
