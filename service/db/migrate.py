"""Migrating the database with Alembic (``backprop db upgrade``): the scripts in ``migrations/``,
pointed at the URL of the settings.
"""

import argparse
from pathlib import Path

from alembic import command
from alembic.config import Config

from service.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def upgrade_database(settings: Settings, args: argparse.Namespace) -> int:
    """``backprop db upgrade [REV]``."""
    upgrade(settings, args.revision)
    return 0


def downgrade_database(settings: Settings, args: argparse.Namespace) -> int:
    """``backprop db downgrade REV``."""
    command.downgrade(alembic_config(settings), args.revision)
    return 0
