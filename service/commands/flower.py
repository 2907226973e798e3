"""``backprop flower``: Celery's Flower monitor on the service's broker, behind basic auth.

Flower reads its own options from ``FLOWER_*`` variables (``FLOWER_BASIC_AUTH=user:password``,
``FLOWER_PORT``, default 5555). It shows tasks only where Celery events reach it: on Redis,
where workers send them (service/broker.py); the embedded broker carries none.
"""

import argparse
import os
import sys

from service.broker import create_celery_app
from service.settings import Settings

BASIC_AUTH = "FLOWER_BASIC_AUTH"


def run_flower(settings: Settings, args: argparse.Namespace) -> int:
    """Serve Flower until stopped; refuse to start without a login (it can revoke tasks)."""
    if not os.environ.get(BASIC_AUTH):
        print(f"backprop flower: set {BASIC_AUTH}=user:password first", file=sys.stderr)
        return 2
    create_celery_app(settings).start(["flower", *args.celery_args])
    return 0
