"""Alembic environment: the database URL comes from the same Settings as the service's."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from service.db.models import Base
from service.db.session import make_engine
from service.settings import Settings

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The URL set by the caller (``backprop db``), else ``DATABASE_URL`` or the default."""
    return config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(database_url())
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            suspend_foreign_keys(connection)
        context.configure(
            connection=connection, target_metadata=Base.metadata, render_as_batch=sqlite
        )
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            check_foreign_keys(connection)
    engine.dispose()


def suspend_foreign_keys(connection: Connection) -> None:
    """SQLite: batch mode rebuilds a table by copying it, dropping it and renaming the copy;
    with foreign keys on, dropping it would cascade to the rows that point at it (every model
    of a rebuilt jobs table). The pragma only works outside a transaction, hence the commit."""
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()


def check_foreign_keys(connection: Connection) -> None:
    """SQLite: fail the migration's command if it left a row pointing at nothing."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
