"""``backprop``: start the parts of the service.

    backprop api                 the HTTP API under gunicorn on $PORT
    backprop worker [ARGS...]    a Celery worker (extra arguments go to celery worker)
    backprop dispatcher          re-queue jobs of dead workers, send queued jobs to the broker
    backprop db upgrade [REV]    migrate the database (default: head)
    backprop db downgrade REV    e.g. base
    backprop run                 migrate, then the API, one worker and the dispatcher until Ctrl-C
    backprop demo                train the digits demo in this process, no servers

Settings are read from the environment here, once per process (see service/settings.py).
"""

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from gunicorn.app.base import BaseApplication

from service import create_app, events
from service.db.session import make_session_factory
from service.demo import run_demo
from service.outbox import run_dispatcher
from service.processes import LocalStack
from service.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Parsing a data set upload near MAX_REQUEST_BYTES takes longer than gunicorn's default 30 s.
REQUEST_TIMEOUT_SECONDS = 300
Handler = Callable[[Settings, argparse.Namespace], int]


def leave_interrupts_to_the_arbiter(_worker) -> None:
    """Ignore SIGINT in a gunicorn worker: a Ctrl-C reaches the whole process group, and the
    arbiter answers it with a SIGQUIT to each worker. A gthread worker given both re-enters its
    quit handler and deadlocks on its thread pool's shutdown lock (gunicorn 27), living on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class GunicornApp(BaseApplication):
    """Gunicorn serving ``create_app(settings)``, one app per worker process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        """Threaded workers: an event stream holds a thread for minutes, not a whole process
        (and the worker's liveness ``timeout`` does not cut long streams short); only the
        arbiter hears a terminal's Ctrl-C."""
        self.cfg.set("bind", f"{self.settings.host}:{self.settings.port}")
        self.cfg.set("workers", self.settings.web_concurrency)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", events.THREADS_PER_PROCESS)
        self.cfg.set("timeout", REQUEST_TIMEOUT_SECONDS)
        self.cfg.set("accesslog", "-")
        self.cfg.set("loglevel", self.settings.log_level.lower())
        self.cfg.set("post_worker_init", leave_interrupts_to_the_arbiter)

    def load(self):
        return create_app(self.settings)


def prepare(settings: Settings) -> Settings:
    """Create the folders of the embedded SQLite files."""
    for path in settings.sqlite_paths():
        path.parent.mkdir(parents=True, exist_ok=True)
    return settings


def alembic_config(settings: Settings) -> Config:
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return config


def serve_api(settings: Settings, _args: argparse.Namespace) -> int:
    GunicornApp(settings).run()
    return 0


def imported_on_call(module: str, function: str) -> Handler:
    """A handler whose module is imported only when the command runs: ``backprop api`` must not
    load the worker's training code, which ``backprop worker`` needs."""

    def handler(settings: Settings, args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), function)(settings, args)

    return handler


def dispatch(settings: Settings, _args: argparse.Namespace) -> int:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    run_dispatcher(settings, make_session_factory(settings.database_url))
    return 0


def upgrade_database(settings: Settings, args: argparse.Namespace) -> int:
    command.upgrade(alembic_config(settings), args.revision)
    return 0


def downgrade_database(settings: Settings, args: argparse.Namespace) -> int:
    command.downgrade(alembic_config(settings), args.revision)
    return 0


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that ``with LocalStack`` stops the children: they lead
    process groups of their own and hear no signal sent to this process alone."""

    def leave(_signal_number, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)


def run_all(settings: Settings, _args: argparse.Namespace) -> int:
    """Migrate, then run the API, one worker and the dispatcher as child processes until one
    exits, Ctrl-C or SIGTERM."""
    command.upgrade(alembic_config(settings), "head")
    exit_on_sigterm()
    with LocalStack(os.environ, workers=1) as stack:
        try:
            return stack.wait_for_first_exit()
        except KeyboardInterrupt:
            return 0


def demo(_settings: Settings, _args: argparse.Namespace) -> int:
    run_demo()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backprop", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("api", help="serve the HTTP API").set_defaults(handler=serve_api)
    worker = commands.add_parser("worker", help="run a Celery worker (other options go to celery)")
    worker.set_defaults(handler=imported_on_call("worker.main", "run_worker"), passes_options=True)
    commands.add_parser(
        "dispatcher", help="re-queue jobs of dead workers, send queued jobs to the broker"
    ).set_defaults(handler=dispatch)
    database = commands.add_parser("db", help="migrate the database").add_subparsers(
        dest="action", required=True
    )
    upgrade = database.add_parser("upgrade", help="migrate up (default: head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=upgrade_database)
    downgrade = database.add_parser("downgrade", help="migrate down, e.g. to base")
    downgrade.add_argument("revision")
    downgrade.set_defaults(handler=downgrade_database)
    run = commands.add_parser("run", help="migrate, then the API, a worker and the dispatcher")
    run.set_defaults(handler=run_all)
    commands.add_parser("demo", help="train the digits demo locally").set_defaults(handler=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_options", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.celery_args = extra
    handler: Handler = args.handler
    return handler(prepare(Settings.from_env()), args)


if __name__ == "__main__":
    sys.exit(main())
