"""The dispatcher: the loop that makes an accepted job run, whatever happened to its worker or
to the broker. ``backprop dispatcher`` runs it (``backprop run``, docker compose and the
integration stacks start one); several may run at once, since every step is a conditional
UPDATE and a duplicate message is harmless (a worker's claim is atomic, the loser trains nothing).

Each round, every ``dispatch_interval_seconds``:

* reap: running jobs whose lease expired (their training process died) go back to queued, or
  end failed once they used ``max_attempts`` (a poison job), or cancelled if asked to stop;
* dispatch (the outbox): queued jobs never sent (``dispatched_at`` NULL: the API's publish
  failed, or the reaper re-queued them) are published, and marked after the publish succeeds;
* sweeps: a running sweep whose trials ended without a worker to queue the next ones (the
  reaper ended them, or a cancel through /v1/jobs) gets them queued here, or is ended (its best
  model registered: API processes see that version once their cached references age out);
* webhooks (their outbox): deliveries due (new, or whose backoff ended) are published to the
  webhook queue and marked; one published that long ago and still not claimed, or claimed
  under a lease that expired (its webhook worker died mid-attempt), is published again;
* operations (their outbox): those never published, or published that long ago and still
  unclaimed, or claimed under a lease that expired (their worker died), are published to the
  operations queue; a worker's claim ends failed one whose workers died OPERATION_MAX_ATTEMPTS
  times;
* re-dispatch: queued jobs sent more than ``REDISPATCH_AFTER_SECONDS`` ago are published again
  when the broker's queue is empty. A message that is not in the queue is held by a worker, and
  a worker that holds a message claims its job at once unless it is busy with another; so an
  empty queue next to a job that stayed queued that long means, most of the time, that the
  broker lost the message (Redis restarted without persistence, a worker died between
  receiving a message and claiming its job). When it was only a busy worker, the copy is
  dropped by the claim of whichever delivery comes second.

Lease times are written from the workers' clocks and compared with the dispatcher's: hosts must
keep their clocks in sync (NTP); a lease of several seconds absorbs the usual skew.

And, for the prediction log and the operations (``LogUpkeep``), once a minute: delete operations
that ended ``OPERATION_RETENTION_DAYS`` ago, and the log's rows older than
``PREDICTION_LOG_DAYS``, a version's oldest rows beyond ``PREDICTION_LOG_MAX_ROWS`` and a deleted
model's rows, in batches of ``RETENTION_BATCH`` rows, each batch its own short transaction (so
inserts are never held up); and every ``DRIFT_INTERVAL`` seconds, the live figures /metrics
exports (drift and accuracy of the last day, per model that logged rows).

It is a process of its own, not a thread in the Celery worker, so that it survives any worker's
death, and never runs inside a process that forks training children.
"""

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from model_core import Model
from service.broker import JobQueue
from service.db import dispatch, operations, predictions, records, sweeps, webhooks
from service.db.models import TrainedModel, utcnow
from service.db.session import make_session_factory
from service.logs import configure_logging
from service.serving.live import METRICS_WINDOW, WINDOWS, live_figures
from service.settings import Settings

logger = logging.getLogger(__name__)

REDISPATCH_AFTER_SECONDS = 10.0
BATCH = 100
RETENTION_BATCH = 5000
RETENTION_INTERVAL_SECONDS = 60.0


class LogUpkeep:
    """The retention of the prediction log and of the operations, and the live figures, each run
    when it is due."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.next_retention = 0.0
        self.next_figures = 0.0

    def run_due(self, sessions: sessionmaker[Session]) -> None:
        now = time.monotonic()
        if now >= self.next_retention:
            self.next_retention = now + RETENTION_INTERVAL_SECONDS
            deleted = self.delete_expired(sessions)
            if deleted:
                logger.info("retention: %d rows deleted (prediction log, operations)", deleted)
        if now >= self.next_figures:
            self.next_figures = now + self.settings.drift_interval
            self.refresh_live_figures(sessions)

    def delete_expired(self, sessions: sessionmaker[Session]) -> int:
        """Delete, batch by batch, the rows retention no longer keeps; how many went."""
        before = utcnow() - timedelta(days=self.settings.prediction_log_days)
        max_rows = self.settings.prediction_log_max_rows
        deleted = 0
        with sessions() as session:
            deleted += until_none_left(
                lambda: predictions.delete_older_than(session, before, RETENTION_BATCH)
            )
            deleted += until_none_left(lambda: predictions.delete_orphans(session, RETENTION_BATCH))
            deleted += predictions.delete_bin_counts(session, before)
            ended_before = utcnow() - timedelta(days=self.settings.operation_retention_days)
            deleted += until_none_left(
                lambda: operations.delete_ended_before(session, ended_before, RETENTION_BATCH)
            )
            for model_id in predictions.models_over(session, max_rows):
                deleted += until_none_left(
                    lambda model_id=model_id: predictions.delete_beyond(
                        session, model_id, max_rows, RETENTION_BATCH
                    )
                )
        return deleted

    def refresh_live_figures(self, sessions: sessionmaker[Session]) -> None:
        """Recompute the last day's figures of every model that logged rows in it, and forget
        those of the models that logged none."""
        now = utcnow()
        with sessions() as session:
            model_ids = predictions.models_logged_since(session, now - WINDOWS[METRICS_WINDOW])
            for model_id, _ in predictions.live_figures(session):
                if model_id not in model_ids:  # nothing logged for a day: nothing to export
                    predictions.set_live_figures(session, model_id, None)
        for model_id in model_ids:
            with sessions() as session:
                row = session.get(TrainedModel, model_id)
                blob = records.get_model_blob(session, model_id)
                if row is None or blob is None:
                    continue
                figures = live_figures(session, row, Model.from_bytes(blob), now, self.settings)
                predictions.set_live_figures(session, model_id, figures)


def until_none_left(delete_batch) -> int:
    """Call ``delete_batch`` (which deletes at most a batch, and says how many) until it
    deletes nothing; the total."""
    total = 0
    while deleted := delete_batch():
        total += deleted
    return total


class Dispatcher:
    """One reap + dispatch round per ``run_once``; ``run_forever`` repeats it until stopped."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        queue: JobQueue,
        max_attempts: int,
        interval: float,
        redispatch_after: float = REDISPATCH_AFTER_SECONDS,
        webhook_lease: float = Settings().webhook_lease_seconds(),
        log_upkeep: LogUpkeep | None = None,
        operation_lease: float = Settings().operation_lease_seconds,
    ):
        self.sessions = sessions
        self.log_upkeep = log_upkeep
        self.queue = queue
        self.max_attempts = max_attempts
        self.interval = interval
        self.redispatch_after = redispatch_after
        self.webhook_lease = webhook_lease
        self.operation_lease = operation_lease
        self.stopped = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings, sessions: sessionmaker[Session]) -> "Dispatcher":
        return cls(
            sessions,
            JobQueue.from_settings(settings),
            settings.max_attempts,
            settings.dispatch_interval_seconds,
            webhook_lease=settings.webhook_lease_seconds(),
            log_upkeep=LogUpkeep(settings),
            operation_lease=settings.operation_lease_seconds,
        )

    def run_forever(self) -> None:
        """Repeat rounds every ``interval`` until ``stop``; an unreachable database or broker is
        logged and the next round tries again."""
        while not self.stopped.is_set():
            try:
                self.run_once()
            except Exception as error:  # the loop outlives any outage or bug in one round
                logger.warning(
                    "dispatcher: %s: %s; next round in %s s",
                    type(error).__name__,
                    error,
                    self.interval,
                )
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()

    def run_once(self) -> int:
        """Reap expired leases, advance stalled sweeps, publish due webhook deliveries and the
        operations that need it, keep the prediction log, then publish the jobs that need it;
        return how many jobs were sent."""
        self.reap()
        self.advance_sweeps()
        self.dispatch_deliveries()
        self.dispatch_operations()
        self.keep_prediction_log()
        with self.sessions() as session:
            job_ids = dispatch.jobs_to_dispatch(session, self._lost_before(), BATCH)
        for job_id in job_ids:
            self.queue.enqueue_training(job_id)
            with self.sessions() as session:
                dispatch.mark_dispatched(session, job_id)
        if job_ids:
            logger.info("dispatched jobs %s", job_ids)
        return len(job_ids)

    def dispatch_deliveries(self) -> int:
        """Publish the webhook deliveries due (to the webhook queue) and mark them; return how
        many."""
        return self.publish_outbox(
            webhooks.deliveries_to_dispatch,
            self.queue.enqueue_delivery,
            webhooks.mark_dispatched,
            self.webhook_lease,
        )

    def dispatch_operations(self) -> int:
        """Publish the operations that need it (to the operations queue) and mark them;
        return how many."""
        return self.publish_outbox(
            operations.operations_to_dispatch,
            self.queue.enqueue_operation,
            operations.mark_dispatched,
            self.operation_lease,
        )

    def publish_outbox(
        self,
        to_dispatch: Callable[[Session, datetime, int], list[int]],
        enqueue: Callable[[int], None],
        mark_dispatched: Callable[[Session, int], None],
        lease: float,
    ) -> int:
        """Publish the rows ``to_dispatch`` lists (a batch: never published, or published
        more than ``lease`` seconds ago and held by no worker), marking each once sent."""
        lost_before = utcnow() - timedelta(seconds=lease)
        with self.sessions() as session:
            row_ids = to_dispatch(session, lost_before, BATCH)
        for row_id in row_ids:
            enqueue(row_id)
            with self.sessions() as session:
                mark_dispatched(session, row_id)
        return len(row_ids)

    def keep_prediction_log(self) -> None:
        """The log's upkeep, when due; a failure is logged and never holds up the jobs."""
        if self.log_upkeep is None:
            return
        try:
            self.log_upkeep.run_due(self.sessions)
        except Exception:
            logger.exception("prediction log upkeep failed; retried when next due")

    def reap(self) -> None:
        with self.sessions() as session:
            moved = dispatch.reap_expired_leases(session, self.max_attempts)
        for status, job_ids in moved.items():
            if job_ids:
                logger.warning("lease expired: jobs %s are now %s", job_ids, status)

    def advance_sweeps(self) -> None:
        with self.sessions() as session:
            stalled = sweeps.stalled_sweeps(session)
        for sweep_id in stalled:
            self.advance_sweep(sweep_id)

    def advance_sweep(self, sweep_id: int) -> None:
        """Advance one sweep; one that fails is logged and left for the next round, so that it
        does not hold up the other sweeps nor the publishing of every tenant's jobs."""
        with self.sessions() as session:
            try:
                advanced = sweeps.advance(session, sweep_id)
                session.commit()
            except Exception:
                session.rollback()
                logger.exception("sweep %s: advancing it failed; retried next round", sweep_id)
                return
        logger.info("sweep %s: queued trial jobs %s", sweep_id, list(advanced.job_ids))

    def _lost_before(self):
        """The dispatch time before which a still-queued job's message counts as lost: only
        asked for (a broker round trip) when the broker's queue is empty."""
        if self.queue.queued_messages():
            return None
        return utcnow() - timedelta(seconds=self.redispatch_after)


def run_dispatcher(settings: Settings, _args: argparse.Namespace) -> int:
    """``backprop dispatcher``: run the dispatcher in this process until SIGTERM or SIGINT."""
    configure_logging(settings)
    dispatcher = Dispatcher.from_settings(settings, make_session_factory(settings.database_url))

    def stop(_signum, _frame) -> None:
        dispatcher.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("dispatcher: a round every %s s", settings.dispatch_interval_seconds)
    dispatcher.run_forever()
    return 0
