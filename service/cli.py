"""``backprop``: start the parts of the service.

    backprop api                 the HTTP API under gunicorn on $PORT
    backprop worker [ARGS...]    a Celery worker (extra arguments go to celery worker)
    backprop dispatcher          re-queue jobs of dead workers, send queued jobs to the broker
    backprop db upgrade [REV]    migrate the database (default: head)
    backprop db downgrade REV    e.g. base
    backprop run                 migrate, then the API, one worker and the dispatcher until Ctrl-C
    backprop demo                train the digits demo in this process, no servers

Settings are read from the environment here, once per process (see service/settings.py). Each
command's module is imported only when that command runs: the worker, the dispatcher and the
migrations never load Flask, and the API never loads the training code.
"""

import argparse
import importlib
import sys
from collections.abc import Callable

from service.db.session import create_sqlite_folders
from service.settings import Settings

Handler = Callable[[Settings, argparse.Namespace], int]


def imported_on_call(module: str, function: str) -> Handler:
    """The handler ``module.function(settings, args)``, its module imported when it runs."""

    def handler(settings: Settings, args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), function)(settings, args)

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backprop", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("api", help="serve the HTTP API").set_defaults(
        handler=imported_on_call("service.server", "serve_api")
    )
    worker = commands.add_parser("worker", help="run a Celery worker (other options go to celery)")
    worker.set_defaults(handler=imported_on_call("worker.main", "run_worker"), passes_options=True)
    commands.add_parser(
        "dispatcher", help="re-queue jobs of dead workers, send queued jobs to the broker"
    ).set_defaults(handler=imported_on_call("service.dispatcher", "run_dispatcher"))
    database = commands.add_parser("db", help="migrate the database").add_subparsers(
        dest="action", required=True
    )
    upgrade = database.add_parser("upgrade", help="migrate up (default: head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=imported_on_call("service.db.migrate", "upgrade_database"))
    downgrade = database.add_parser("downgrade", help="migrate down, e.g. to base")
    downgrade.add_argument("revision")
    downgrade.set_defaults(handler=imported_on_call("service.db.migrate", "downgrade_database"))
    commands.add_parser(
        "run", help="migrate, then the API, a worker and the dispatcher"
    ).set_defaults(handler=imported_on_call("service.supervisor", "run_all"))
    commands.add_parser("demo", help="train the digits demo locally").set_defaults(
        handler=imported_on_call("service.demo", "demo")
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_options", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.celery_args = extra
    handler: Handler = args.handler
    return handler(create_sqlite_folders(Settings.from_env()), args)


if __name__ == "__main__":
    sys.exit(main())
