"""``backprop keys create|list|revoke``: API keys, made straight in the database.

The only way to make a key for any tenant (over HTTP an admin key manages its own tenant's
keys only). ``create`` prints the key alone on the last line of stdout, once: only its hash is
kept. A revocation moves the registry generation, so every API process refuses the key at once.
"""

import argparse
import re
import sys

from service.db import keys
from service.db.models import ApiKey
from service.db.session import make_session_factory
from service.generation import generation_for
from service.settings import Settings
from service.vocabulary import TENANT_PATTERN, Scope


def add_key_commands(commands: argparse._SubParsersAction, handler_for) -> None:
    """The ``keys`` subcommands, each run by ``handler_for(function name)``."""
    actions = commands.add_parser("keys", help="make, list and revoke API keys").add_subparsers(
        dest="action", required=True
    )
    create = actions.add_parser("create", help="make a key; it is printed once, on the last line")
    create.add_argument("--tenant", required=True, type=tenant_name)
    create.add_argument("--scope", choices=[scope.value for scope in Scope], default="read")
    create.add_argument("--expires", type=positive_days, metavar="DAYS", help="days until expiry")
    create.add_argument("--description", default=None, help="what the key is for")
    create.set_defaults(handler=handler_for("create_key"))
    listing = actions.add_parser("list", help="every key (never the key itself)")
    listing.add_argument("--tenant", type=tenant_name, default=None)
    listing.set_defaults(handler=handler_for("list_keys"))
    revoke = actions.add_parser("revoke", help="revoke a key by id, at once")
    revoke.add_argument("key_id", type=int, metavar="ID")
    revoke.set_defaults(handler=handler_for("revoke_key"))


def tenant_name(text: str) -> str:
    if not re.fullmatch(TENANT_PATTERN, text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a tenant is lowercase letters, digits, '.', '_' or '-' (up to 64)"
        )
    return text


def positive_days(text: str) -> float:
    days = float(text)
    if not 0 < days <= 36500:
        raise argparse.ArgumentTypeError(f"{text!r}: days must be in (0, 36500]")
    return days


def describe(row: ApiKey) -> str:
    expires = row.expires_at.isoformat(timespec="seconds") if row.expires_at else "never"
    state = "revoked" if row.revoked_at else "active"
    return f"{row.id:>6}  {row.tenant:<20} {row.scope:<6} {state:<8} expires {expires}"


def create_key(settings: Settings, args: argparse.Namespace) -> int:
    with make_session_factory(settings.database_url)() as session:
        row, text = keys.create_key(
            session, args.tenant, Scope(args.scope), args.expires, args.description
        )
        print(f"key {row.id} for tenant {row.tenant!r}, scope {row.scope}; shown only now:")
        print(text)
    return 0


def list_keys(settings: Settings, args: argparse.Namespace) -> int:
    with make_session_factory(settings.database_url)() as session:
        for row in keys.list_keys(session, args.tenant):
            print(describe(row))
    return 0


def revoke_key(settings: Settings, args: argparse.Namespace) -> int:
    with make_session_factory(settings.database_url)() as session:
        row = keys.get_key(session, args.key_id)
        if row is None:
            print(f"no key {args.key_id}", file=sys.stderr)
            return 1
        keys.revoke_key(session, row)
        generation_for(settings).bump()
        print(describe(row))
    return 0
