"""The ``on_epoch`` callback of a training attempt: history, checkpoints and when to stop.

Epoch records are written in batches (at most every ``metrics_flush_seconds``, and at the end),
so a 5,000-epoch job is not dominated by database round trips. A flush carries a checkpoint when
one is due (every ``checkpoint_every_epochs`` epochs or ``checkpoint_every_seconds`` seconds,
whichever comes first, and at most one per flush: on tiny epochs a checkpoint every few epochs
would cost more than the training), and brings back the job's cancel flag in the same round trip.

A flush also renews the attempt's lease (the heartbeat then has nothing to do), and on PostgreSQL
it is one statement: one round trip (docs/scaling.md). When flushes slow down (the database is
queueing them) the interval between them grows, up to ``MAX_FLUSH_SLOWDOWN`` times the policy's,
and shrinks back when they are quick again.

A flush without a checkpoint may commit asynchronously; a database that crashes can lose such a
commit after acknowledging it. The recorder keeps the records of those commits until a
synchronous one (a checkpoint, the ending) makes them durable, and every flush checks that it
follows the last stored epoch: after a loss it is told where the stored history ends
(``HistoryGap``) and writes the missing epochs again from memory, so each is stored once.

A sweep's trial with early termination (ASHA) flushes at each rung epoch and then asks the
database how its value there ranks among the trials that reached it (service/db/sweeps.py):
the decision is stored on the trial, and a trial that falls below the cutoff stops, pruned.
"""

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from model_core import Trainer
from service.db import attempts
from service.sweeps.asha import Asha, rung_decision
from service.vocabulary import EPOCH_FIGURES
from worker.lease import Heartbeat
from worker.retries import is_transient

logger = logging.getLogger(__name__)

RECORD_FIELDS = (*EPOCH_FIGURES, "learning_rate", "seconds")
T = TypeVar("T")
# A flush slower than the interval itself means the database queues flushes: the interval
# doubles (at most MAX_FLUSH_SLOWDOWN times the policy's); one quicker than a quarter of it
# halves the interval back.
MAX_FLUSH_SLOWDOWN = 16


def plain_record(record: dict[str, Any]) -> dict[str, Any]:
    """An epoch record with Python numbers only (drivers do not take numpy scalars)."""
    values = {key: None if record[key] is None else float(record[key]) for key in RECORD_FIELDS}
    return {"epoch": int(record["epoch"]), **values}


class Stop(enum.Enum):
    """Why an attempt stopped before its last epoch (an ending other than success)."""

    CANCELLED = "cancelled"
    TIME_LIMIT = "time limit"
    LEASE_LOST = "lease lost"
    PRUNED = "pruned"


@dataclass(frozen=True)
class EarlyTermination:
    """A trial's ASHA settings, its last epoch, and the rung decisions stored so far (those of
    an earlier attempt, when resuming)."""

    asha: Asha
    epochs: int
    rungs: list[dict[str, Any]]


@dataclass(frozen=True)
class RecordingPolicy:
    """How often to write and checkpoint, and how long the job may train (seconds of epochs,
    summed over every attempt)."""

    flush_seconds: float
    checkpoint_every_epochs: int
    checkpoint_every_seconds: float
    max_seconds: float


class EpochRecorder:
    """The ``on_epoch`` callback: buffers records, writes them (with a checkpoint when due) every
    ``flush_seconds`` at most, and says when to stop: a cancel, the time limit, a lost lease.

    A flush that meets a transient database error keeps its records for the next one.
    ``lease``, when given, is the attempt's heartbeat: the flushes renew its lease with it.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        job_id: int,
        attempt: int,
        policy: RecordingPolicy,
        lease_lost: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        early_termination: EarlyTermination | None = None,
        lease: Heartbeat | None = None,
    ):
        self.sessions = sessions
        self.job_id = job_id
        self.attempt = attempt
        self.policy = policy
        self.lease_lost = lease_lost
        self.clock = clock
        self.early_termination = early_termination
        self.rungs = list(early_termination.rungs) if early_termination else []
        self.lease = lease
        self.pending: list[dict[str, Any]] = []
        # Records committed asynchronously, not yet made durable by a synchronous commit.
        self.unconfirmed: list[dict[str, Any]] = []
        self.flush_seconds = policy.flush_seconds
        self.stop: Stop | None = None
        self.snapshot: Callable[[], bytes] | None = None
        self.epoch = self.checkpointed_epoch = self.stored_epoch = 0
        self.trained_seconds = 0.0
        self.flushed_at = self.checkpointed_at = clock()

    def follow(self, trainer: Trainer) -> None:
        """Checkpoint ``trainer``, counting from the state it resumed (if any)."""
        self.snapshot = trainer.checkpoint
        self.epoch = self.checkpointed_epoch = self.stored_epoch = trainer.epoch
        self.trained_seconds = sum(record["seconds"] for record in trainer.history)

    def __call__(self, record: dict[str, Any]) -> bool:
        self.pending.append(plain_record(record))
        self.epoch = record["epoch"]
        self.trained_seconds += record["seconds"]
        if self.lease_lost.is_set():
            self.stop = Stop.LEASE_LOST
        elif self.trained_seconds > self.policy.max_seconds:
            self.stop = Stop.TIME_LIMIT
        elif self._at_rung(self.epoch):
            self.flush()
            self._decide_rung(self.epoch)
        elif self.clock() - self.flushed_at >= self.flush_seconds:
            self.flush()
        return self.stop is not None

    def _at_rung(self, epoch: int) -> bool:
        rules = self.early_termination
        return rules is not None and rules.asha.is_rung(epoch, rules.epochs)

    def _decide_rung(self, epoch: int) -> None:
        """Continue or prune, from the stored epochs of the sweep's trials. Not when the flush
        kept its records (the database is away: the trial continues undecided)."""
        if self.stop is not None or self.pending:
            return
        asha = self.early_termination.asha

        def decide(session: Session) -> dict[str, Any] | None:
            decision = rung_decision(session, asha, self.job_id, epoch)
            if decision is not None:
                self.rungs = [rung for rung in self.rungs if rung["epoch"] != epoch] + [decision]
                attempts.record_rung(session, self.job_id, self.attempt, self.rungs)
            return decision

        decision = self._write(decide, f"rung {epoch} undecided")
        if decision is not None and decision["pruned"]:
            self.stop = Stop.PRUNED

    def flush(self) -> None:
        """Write the pending records (and a checkpoint when due); once more at once if the
        stored history turned out to have lost its last epochs (written again first)."""
        if self._flush_once() is attempts.HistoryGap:
            self._flush_once()

    def _flush_once(self) -> type[attempts.HistoryGap] | None:
        checkpoint = self._due_checkpoint()
        batch = attempts.EpochRecords(
            self.pending,
            lease_seconds=self.lease and self.lease.lease_seconds,
            synchronous=checkpoint is not None,
        )

        def record(session: Session) -> bool:
            return attempts.record_progress(session, self.job_id, self.attempt, batch, checkpoint)

        unwritten = f"cannot write yet; keeping {len(self.pending)} epoch records"
        started = self.clock()
        try:
            cancel_requested = self._write(record, unwritten)
        except attempts.HistoryGap as gap:
            self._rewind(gap.stored_epoch)
            return attempts.HistoryGap
        finally:
            self.flushed_at = self.clock()
            self._adapt_interval(self.flushed_at - started)
        if cancel_requested is None:
            return None
        self._written(batch, checkpoint)
        if cancel_requested:
            self.stop = Stop.CANCELLED
        return None

    def _written(self, batch: attempts.EpochRecords, checkpoint: attempts.Checkpoint | None):
        self.pending = []
        if batch:
            self.stored_epoch = batch[-1]["epoch"]
        # A synchronous commit makes every earlier (asynchronous) one durable too.
        self.unconfirmed = [] if batch.synchronous else self.unconfirmed + batch
        if self.lease is not None:
            self.lease.renewed()
        if checkpoint is not None:
            self.checkpointed_epoch, self.checkpointed_at = checkpoint.epoch, self.flushed_at

    def _rewind(self, stored_epoch: int) -> None:
        """Make pending again the records after ``stored_epoch``, which the database lost."""
        lost = [record for record in self.unconfirmed if record["epoch"] > stored_epoch]
        first = (lost or self.pending or [{"epoch": stored_epoch + 1}])[0]["epoch"]
        if first != stored_epoch + 1:
            raise RuntimeError(
                f"job {self.job_id}: stored history ends at epoch {stored_epoch}, and this "
                f"attempt no longer holds epoch {stored_epoch + 1}"
            )
        logger.warning(
            "job %s: the database lost epochs %s to %s; writing them again",
            self.job_id,
            stored_epoch + 1,
            self.stored_epoch,
        )
        self.unconfirmed = [r for r in self.unconfirmed if r["epoch"] <= stored_epoch]
        self.pending = lost + self.pending
        self.stored_epoch = stored_epoch

    def _adapt_interval(self, seconds: float) -> None:
        """Double the flush interval after a busy flush, halve it back after a quick one."""
        base = self.policy.flush_seconds
        if seconds > self.flush_seconds:
            self.flush_seconds = min(max(base, 2 * self.flush_seconds), MAX_FLUSH_SLOWDOWN * base)
        elif seconds < self.flush_seconds / 4:
            self.flush_seconds = max(base, self.flush_seconds / 2)

    def unwritten(self, session: Session) -> list[dict[str, Any]]:
        """The records the attempt's ending must write: the pending ones, after those of
        asynchronous commits the database lost (read in ``session``, the ending's transaction,
        so that a loss just before it is seen)."""
        if self.unconfirmed:
            stored = attempts.stored_epoch(session, self.job_id)
            if stored < self.stored_epoch:
                self._rewind(stored)
        return self.pending

    def _write(self, write: Callable[[Session], T], unwritten: str) -> T | None:
        """``write(session)``'s result in a transaction of its own, or None when it wrote
        nothing: a stale attempt stops this one (its lease is lost), a transient database error
        is logged with what stays ``unwritten`` and training goes on; any other error is
        raised."""
        try:
            with self.sessions() as session:
                return write(session)
        except attempts.StaleAttempt:
            self.stop = Stop.LEASE_LOST
        except DBAPIError as error:
            if not is_transient(error):
                raise
            logger.warning("job %s: %s (%s)", self.job_id, unwritten, error.orig)
        return None

    def _due_checkpoint(self) -> attempts.Checkpoint | None:
        due = (
            self.epoch - self.checkpointed_epoch >= self.policy.checkpoint_every_epochs
            or self.clock() - self.checkpointed_at >= self.policy.checkpoint_every_seconds
        )
        if not due or self.snapshot is None or self.epoch == self.checkpointed_epoch:
            return None
        return attempts.Checkpoint(self.epoch, self.snapshot())

    def time_limit_message(self, epochs: int) -> str:
        return (
            f"exceeded training.max_seconds={self.policy.max_seconds:g}: stopped after epoch "
            f"{self.epoch} of {epochs} ({self.trained_seconds:.1f} s of training)"
        )
