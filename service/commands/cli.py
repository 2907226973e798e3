"""``backprop``: start the parts of the service.

    backprop api                 the HTTP API under Granian on $PORT
    backprop worker [ARGS...]    a Celery worker (extra arguments go to celery worker)
    backprop webhook-worker [ARGS...]  a Celery worker that sends webhook deliveries only
    backprop dispatcher          re-queue jobs of dead workers, send queued jobs to the broker
    backprop webhooks reencrypt  seal every webhook secret under SECRET_KEY (after a rotation)
    backprop db upgrade [REV]    migrate the database (default: head)
    backprop db downgrade REV    e.g. base
    backprop run                 migrate, then the API, one worker and the dispatcher until Ctrl-C
    backprop demo                train the digits demo in this process, no servers
    backprop flower [ARGS...]    Celery's Flower on the broker (needs FLOWER_BASIC_AUTH)
    backprop keys create --tenant NAME [--scope read|write|admin] [--expires DAYS]
    backprop keys list [--tenant NAME]
    backprop keys revoke ID
    backprop datasets|train|jobs|models|predict|plot ...   talk to a running service
                                 ($BACKPROP_URL, $BACKPROP_API_KEY): see docs/client.md

Settings are read from the environment here, once per process (see service/settings.py). Each
command's module is imported only when that command runs: the worker, the dispatcher and the
migrations never load Flask, and the API never loads the training code.
"""

import argparse
import importlib
import sys
from collections.abc import Callable

from service.commands.key_commands import add_key_commands
from service.commands.people_commands import add_people_commands
from service.metrics_files import prepare_metrics_files
from service.settings import Settings, create_sqlite_folders

Handler = Callable[[Settings, argparse.Namespace], int]


def imported_on_call(module: str, function: str) -> Handler:
    """The handler ``module.function(settings, args)``, its module imported when it runs."""

    def handler(settings: Settings, args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), function)(settings, args)

    return handler


def serve_api(settings: Settings, args: argparse.Namespace) -> int:
    """``backprop api``: the metrics folder is set up before the server's modules import
    prometheus_client, which picks its multiprocess mode then (service/metrics_files.py)."""
    prepare_metrics_files(settings)
    return imported_on_call("service.api.server", "serve_api")(settings, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backprop", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("api", help="serve the HTTP API").set_defaults(
        handler=serve_api, serves_http=True
    )
    worker = commands.add_parser("worker", help="run a Celery worker (other options go to celery)")
    worker.set_defaults(handler=imported_on_call("worker.main", "run_worker"), passes_options=True)
    webhook_worker = commands.add_parser(
        "webhook-worker", help="run a Celery worker sending webhooks (other options go to celery)"
    )
    webhook_worker.set_defaults(
        handler=imported_on_call("worker.main", "run_webhook_worker"), passes_options=True
    )
    webhooks = commands.add_parser("webhooks", help="webhook secrets").add_subparsers(
        dest="action", required=True
    )
    webhooks.add_parser(
        "reencrypt", help="seal every webhook secret under SECRET_KEY (SECRET_KEY_PREVIOUS opens)"
    ).set_defaults(handler=imported_on_call("service.webhooks.secrets", "reencrypt_secrets"))
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
    ).set_defaults(
        handler=imported_on_call("service.commands.supervisor", "run_all"), serves_http=True
    )
    commands.add_parser("demo", help="train the digits demo locally").set_defaults(
        handler=imported_on_call("service.commands.demo", "demo")
    )
    flower = commands.add_parser("flower", help="Celery's Flower monitor (FLOWER_BASIC_AUTH)")
    flower.set_defaults(
        handler=imported_on_call("service.commands.flower", "run_flower"), passes_options=True
    )
    add_key_commands(commands, lambda name: imported_on_call("service.commands.key_actions", name))
    add_people_commands(
        commands, lambda name: imported_on_call("service.commands.people_cli", name)
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_options", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.celery_args = extra
    settings = Settings.from_env()
    if getattr(args, "serves_http", False):
        problem = settings.exposure_problem()
        if problem is not None:
            print(f"backprop {args.command}: refusing to start: {problem}", file=sys.stderr)
            return 2
        print(exposure_notice(settings), file=sys.stderr)
    handler: Handler = args.handler
    return handler(create_sqlite_folders(settings), args)


def exposure_notice(settings: Settings) -> str:
    """What a person starting the API should know about who can reach it."""
    where = f"http://{settings.host}:{settings.port}"
    if settings.auth == "off":
        return (
            f"backprop: AUTH=off, serving {where} to this host only; every request acts for "
            "the 'default' tenant. To open it to a network: AUTH=required HOST=0.0.0.0, and "
            "make keys with `backprop keys create --tenant NAME`."
        )
    return f"backprop: AUTH=required, serving {where}; every /v1 and /v2 call needs a key."


if __name__ == "__main__":
    sys.exit(main())
