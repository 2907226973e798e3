"""The lease of a running attempt, renewed from a thread while the training thread computes.

A worker that dies stops renewing; once its lease expires the reaper (service/dispatcher.py) hands
the job to another attempt. A heartbeat that finds the attempt fenced off (``StaleAttempt``: the job
was re-queued, cancelled or claimed again) sets ``lost``, and training stops at the next epoch
without writing anything more.

The epoch recorder's flushes renew the lease too (worker/recorder.py): a beat is due an interval
after the last renewal of either kind, so a job that flushes often costs no heartbeat
transactions, and one that flushes seldom is renewed as often as before.
"""

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from service.db import attempts
from worker.retries import is_transient

logger = logging.getLogger(__name__)


class Heartbeat:
    """Renews a lease of ``lease_seconds`` every ``interval`` seconds by calling ``renew`` with a
    new session (a daemon thread between ``start`` and ``stop``, or inside ``with``); ``what``
    names the holder in the log. ``renew`` raises ``StaleAttempt`` once the lease is lost."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        renew: Callable[[Session], None],
        lease_seconds: float,
        interval: float,
        what: str,
    ):
        self.sessions = sessions
        self.renew = renew
        self.lease_seconds = lease_seconds
        self.interval = interval
        self.what = what
        self.lost = threading.Event()
        self.renewed_at = time.monotonic()
        self._failed_at = float("-inf")
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{what.replace(' ', '-')}", daemon=True
        )

    @classmethod
    def of_job(
        cls,
        sessions: sessionmaker[Session],
        job_id: int,
        attempt: int,
        lease_seconds: float,
        interval: float,
    ) -> "Heartbeat":
        """The heartbeat of ``attempt`` of training job ``job_id``."""

        def renew(session: Session) -> None:
            attempts.renew_lease(session, job_id, attempt, lease_seconds)

        return cls(sessions, renew, lease_seconds, interval, f"job {job_id}")

    def _beat(self) -> None:
        while not self._stopped.wait(self._until_due()):
            if self._until_due() > 0:
                continue  # a flush renewed the lease meanwhile
            if not self._beat_once():
                return

    def _beat_once(self) -> bool:
        """Renew the lease once; False when it is lost (``lost`` is set)."""
        try:
            with self.sessions() as session:
                self.renew(session)
            self.renewed()
        except attempts.StaleAttempt:
            logger.warning("%s: this attempt lost its lease", self.what)
            self.lost.set()
            return False
        except DBAPIError as error:
            # The database is away: try again an interval later; if it stays away past the
            # lease, the reaper re-queues the work and a later beat finds the attempt fenced off.
            self._failed_at = time.monotonic()
            level = logging.WARNING if is_transient(error) else logging.ERROR
            logger.log(level, "%s: heartbeat failed: %s", self.what, error.orig)
        return True

    def _until_due(self) -> float:
        """Seconds until the next beat is due: an interval after the last renewal, or after
        the last failed try (else a database that refuses connections would be retried in a
        busy loop)."""
        last = max(self.renewed_at, self._failed_at)
        return max(0.0, last + self.interval - time.monotonic())

    def renewed(self) -> None:
        """Note that the lease was just renewed (by this thread or by a flush)."""
        self.renewed_at = time.monotonic()

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *_exc_info) -> None:
        self._stopped.set()
        self._thread.join()
