"""A job's live progress as Server-Sent Events: one ``epoch`` event per epoch record (its id is the
epoch number, so ``Last-Event-ID`` resumes after it) and one ``status`` event per status change.

The stream polls the database with a new short session each time: no transaction stays open
across a stream, and a database restart costs a few polls, not the stream. It ends once the job
is finished and every epoch record has been sent; the final status is its last event.
"""

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from flask import Response
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.api.errors import fail
from service.api.schemas.jobs import EpochSchema, JobSchema
from service.db import records
from service.vocabulary import ACTIVE_STATUSES

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25
# Proxies close a connection that stays silent for a minute or so; a comment line keeps it open.
HEARTBEAT_SECONDS = 15.0
EPOCHS_PER_POLL = 1000
HEARTBEAT = ": keep-alive\n\n"
# Each open stream holds one thread of an API process (Granian's blocking threads,
# service.api.server); capping streams below the thread count leaves threads for every other
# request.
THREADS_PER_PROCESS = 32
MAX_OPEN_STREAMS = 24
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

EPOCH_SCHEMA = EpochSchema()
STATUS_SCHEMA = JobSchema(
    only=("id", "status", "attempt", "epoch", "epochs", "cancel_requested", "error", "model_id")
)


def sse_event(event: str, data: dict, event_id: int | None = None) -> str:
    """One event in the ``text/event-stream`` format."""
    id_line = "" if event_id is None else f"id: {event_id}\n"
    return f"event: {event}\n{id_line}data: {json.dumps(data)}\n\n"


@dataclass(frozen=True)
class Progress:
    """One poll: the job's status fields, and its epoch records after the last one sent."""

    job: dict
    epochs: list[dict]
    complete: bool  # no more epoch records are stored after ``epochs``

    @property
    def final(self) -> bool:
        return self.job["status"] not in ACTIVE_STATUSES


def read_progress(sessions: Callable[[], Session], job_id: int, after: int) -> Progress:
    """The job's progress after epoch ``after`` (jobs are never deleted: it is there).

    The status is read before the epochs: a job's last records are committed with its final
    status, so once that status is seen the records read next include them all.
    """
    with sessions() as session:
        job = records.get_job(session, job_id)
        epochs = records.list_epochs(session, job_id, after, EPOCHS_PER_POLL)
        return Progress(
            STATUS_SCHEMA.dump(job),
            [EPOCH_SCHEMA.dump(record) for record in epochs],
            len(epochs) < EPOCHS_PER_POLL,
        )


@dataclass
class JobEventStream:
    """The events of job ``job_id`` after epoch ``last_epoch``, as chunks of SSE text."""

    sessions: Callable[[], Session]  # of the caller's tenant
    job_id: int
    last_epoch: int = 0
    poll_seconds: float = POLL_SECONDS
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    status: str | None = None  # the last status sent

    def __iter__(self) -> Iterator[str]:
        written_at = self.clock()
        while True:
            progress = self.poll()
            chunks = self.events(progress) if progress else []
            if chunks or self.clock() - written_at >= self.heartbeat_seconds:
                yield "".join(chunks) or HEARTBEAT
                written_at = self.clock()
            if progress and progress.final and progress.complete:
                return
            if not progress or progress.complete:
                self.sleep(self.poll_seconds)

    def poll(self) -> Progress | None:
        """The progress after the last epoch sent; None while the database is unreachable."""
        try:
            return read_progress(self.sessions, self.job_id, self.last_epoch)
        except OperationalError as error:
            logger.warning("event stream of job %s: database unreachable: %s", self.job_id, error)
            return None

    def events(self, progress: Progress) -> list[str]:
        """The epochs, and the status: first on connecting (whatever it is), before the epochs
        when it changes while the job is active, and last once the job is finished and every
        epoch was sent (so a finished job's stream opens and ends with its final status)."""
        epochs = [sse_event("epoch", record, record["epoch"]) for record in progress.epochs]
        if progress.epochs:
            self.last_epoch = progress.epochs[-1]["epoch"]
        status = sse_event("status", progress.job)
        changed = progress.job["status"] != self.status
        if progress.final:
            opening = [status] if self.status is None else []
            self.status = self.status or progress.job["status"]
            return [*opening, *epochs, *([status] if progress.complete else [])]
        self.status = progress.job["status"]
        return [*([status] if changed else []), *epochs]


class StreamSlots:
    """At most ``limit`` streams open at once in this process, and at most ``per_tenant`` of
    them for one tenant: a tenant holding all it may leaves the others slots of their own."""

    def __init__(self, limit: int = MAX_OPEN_STREAMS, per_tenant: int = MAX_OPEN_STREAMS):
        self.limit = limit
        self.per_tenant = per_tenant
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, tenant: str) -> None:
        """Hold a slot for ``tenant``, or answer 429 (the tenant's share) or 503 (all taken)."""
        with self._lock:
            if self._open[tenant] >= self.per_tenant:
                fail(
                    429,
                    f"This tenant has {self._open[tenant]} event streams open on this API "
                    f"process, its share (STREAMS_PER_TENANT); close one, or poll "
                    "GET /v1/jobs/{id}/epochs.",
                )
            if self._open.total() >= self.limit:
                fail(
                    503,
                    "Too many open event streams; poll GET /v1/jobs/{id}/epochs or retry later.",
                )
            self._open[tenant] += 1

    def give_back(self, tenant: str) -> None:
        with self._lock:
            self._open[tenant] -= 1
            if not self._open[tenant]:
                del self._open[tenant]


def event_stream_response(chunks: Iterable[str], slots: StreamSlots, tenant: str) -> Response:
    """A streamed ``text/event-stream`` response holding one of ``tenant``'s ``slots`` until it
    is closed."""
    slots.take(tenant)
    response = Response(chunks, mimetype="text/event-stream", headers=STREAM_HEADERS)
    response.call_on_close(partial(slots.give_back, tenant))
    return response
