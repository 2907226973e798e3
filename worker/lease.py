"""The lease of a running attempt, renewed from a thread while the training thread computes.

A worker that dies stops renewing; once its lease expires the reaper (service/dispatcher.py) hands
the job to another attempt. A heartbeat that finds the attempt fenced off (``StaleAttempt``: the job
was re-queued, cancelled or claimed again) sets ``lost``, and training stops at the next epoch
without writing anything more.
"""

import logging
import threading
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from service.db import attempts
from worker.retries import is_transient

logger = logging.getLogger(__name__)


class Heartbeat:
    """Renews a lease every ``interval`` seconds by calling ``renew`` with a new session (a
    daemon thread between ``start`` and ``stop``, or inside ``with``); ``what`` names the holder
    in the log. ``renew`` raises ``StaleAttempt`` once the lease is lost."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        renew: Callable[[Session], None],
        interval: float,
        what: str,
    ):
        self.sessions = sessions
        self.renew = renew
        self.interval = interval
        self.what = what
        self.lost = threading.Event()
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

        return cls(sessions, renew, interval, f"job {job_id}")

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                with self.sessions() as session:
                    self.renew(session)
            except attempts.StaleAttempt:
                logger.warning("%s: this attempt lost its lease", self.what)
                self.lost.set()
                return
            except DBAPIError as error:
                # The database is away: keep trying; if it stays away past the lease, the
                # reaper re-queues the work and the next beat finds the attempt fenced off.
                level = logging.WARNING if is_transient(error) else logging.ERROR
                logger.log(level, "%s: heartbeat failed: %s", self.what, error.orig)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *_exc_info) -> None:
        self._stopped.set()
        self._thread.join()
