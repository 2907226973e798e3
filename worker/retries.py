"""Database writes that outlive a PostgreSQL restart: transient errors are retried with backoff.

A lost connection or a database that is restarting (``OperationalError``, ``InterfaceError``, or
any driver error that invalidated its connection) is transient; anything else (bad data, a
constraint violated) is permanent and raised at once. Each try must open its own session: the
engine's ``pool_pre_ping`` then replaces the dead connections.
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Long enough for a database restart or fail-over; a worker that waits longer has lost its lease
# anyway, and the reaper hands the job to another attempt.
RETRY_SECONDS = 120.0
FIRST_DELAY_SECONDS = 0.1
MAX_DELAY_SECONDS = 5.0


def is_transient(error: BaseException) -> bool:
    """True for errors that a new connection, a moment later, may not meet again."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def retry_transient(
    action: Callable[[], T],
    what: str,
    retry_seconds: float = RETRY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``action`` until it succeeds, retrying transient database errors with exponential
    backoff for up to ``retry_seconds``; ``what`` names the action in the log."""
    deadline = clock() + retry_seconds
    delay = FIRST_DELAY_SECONDS
    while True:
        try:
            return action()
        except DBAPIError as error:
            if not is_transient(error) or clock() + delay > deadline:
                raise
            logger.warning("%s: %s; retrying in %.1f s", what, error.orig, delay)
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY_SECONDS)
