"""``backprop keys create|list|revoke``: API keys, made straight in the database.

The only way to make a key for any tenant (over HTTP an admin key manages its own tenant's
keys only). ``create`` prints the key alone on the last line of stdout, once: only its hash is
kept. A revocation moves the registry generation, so every API process refuses the key at once.
The commands' arguments are in key_commands.py.
"""

import argparse
import sys

from service.db import keys
from service.db.models import ApiKey
from service.db.session import make_session_factory
from service.generation import generation_for
from service.settings import Settings
from service.vocabulary import Scope


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
