"""``backprop keys create|list|revoke``: the commands' arguments. key_actions.py runs them and is
imported only when one runs, so that ``backprop``'s other commands (those for people above all,
one process per call) never load the database layer.
"""

import argparse
import re

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
