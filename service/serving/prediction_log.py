"""The prediction log's buffer: what a prediction hands over on the request path (one append
under a lock), and the background thread that writes it to the database in batches.

Nothing is written while a request waits. The buffer holds at most ``capacity`` rows: a request
that would overflow it is dropped whole and counted (``on_dropped``), never waited for. The
thread writes whatever is buffered at least every ``flush_seconds``, and once more when the
process exits normally; a process killed outright loses its unflushed buffer (at most
``flush_seconds`` of predictions), never a committed row. A batch the database refuses is
dropped and counted too, so that an outage cannot grow the buffer without bound.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from service.db.predictions import LogRows, add_bin_counts, reference_blob, write_batch
from service.ids import uuid4_hex
from service.serving.drift import bin_counts, reference_from_npz

logger = logging.getLogger(__name__)


def new_prediction_id() -> str:
    """A request's prediction id: 32 hex digits, random (uuid4)."""
    return uuid4_hex()


@dataclass(frozen=True)
class LoggedRequest:
    """One answered prediction request, as the request path hands it over: arrays, not rows
    (turning them into rows is the thread's work). Without ``keep_inputs`` (PREDICTION_LOG_INPUTS
    =off) the rows' inputs are not written: only their bins of the model's reference profile
    are counted, per hour."""

    prediction_id: str
    tenant: str
    model_id: int
    model_name: str | None
    model_version: int | None
    alias: str | None
    split_arm: str | None
    x: np.ndarray
    keep_inputs: bool
    predictions: np.ndarray
    probabilities: np.ndarray | None
    latency_ms: float
    created_at: datetime

    @property
    def hour(self) -> datetime:
        return self.created_at.replace(minute=0, second=0, microsecond=0)

    @property
    def n_rows(self) -> int:
        return len(self.predictions)

    def log_rows(self) -> LogRows:
        """The request's log rows, as ``write_batch`` takes them."""
        shared = (
            self.prediction_id,
            self.tenant,
            self.model_id,
            self.model_name,
            self.model_version,
            self.alias,
            self.split_arm,
            self.latency_ms,
            self.created_at,
        )
        inputs = list(self.x) if self.keep_inputs else [None] * self.n_rows
        probabilities = (
            list(self.probabilities) if self.probabilities is not None else [None] * self.n_rows
        )
        return LogRows(
            shared, (list(range(self.n_rows)), inputs, self.predictions.tolist(), probabilities)
        )


class PredictionLog:
    """A bounded buffer of logged requests and the thread that writes them (started by the
    first request of each process, so that a process forked after the app was built has its
    own)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        capacity: int,
        flush_seconds: float,
        on_dropped: Callable[[int], None] = lambda _rows: None,
    ):
        self.sessions = sessions
        self.capacity = capacity
        self.flush_seconds = flush_seconds
        self.on_dropped = on_dropped
        self.dropped = 0
        self._pending: list[LoggedRequest] = []
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        # Each model's reference bin edges (per feature), read once: for PREDICTION_LOG_INPUTS=off.
        self._edges: dict[int, list[np.ndarray] | None] = {}

    def record(self, request: LoggedRequest) -> bool:
        """Buffer ``request``; False (and counted as dropped) when the buffer is full."""
        with self._lock:
            if self._pending_rows + request.n_rows > self.capacity:
                self._count_dropped(request.n_rows)
                return False
            self._pending.append(request)
            self._pending_rows += request.n_rows
            if self._thread is None or not self._thread.is_alive():
                self._start_thread()
        return True

    def _count_dropped(self, rows: int) -> None:
        self.dropped += rows
        self.on_dropped(rows)

    def _start_thread(self) -> None:
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.flush_seconds):
            self.flush()
        self.flush()

    def _take(self) -> list[LoggedRequest]:
        with self._lock:
            taken, self._pending, self._pending_rows = self._pending, [], 0
        return taken

    def flush(self) -> int:
        """Write every buffered row in one batch; how many were written (0 when the database
        refused them: they are counted as dropped and logged)."""
        with self._flushing:
            taken = self._take()
            n_rows = sum(request.n_rows for request in taken)
            if not n_rows:
                return 0
            try:
                with self.sessions() as session:
                    write_batch(session, [request.log_rows() for request in taken])
                    add_bin_counts(session, self._bin_counts(session, taken))
            except Exception as error:  # an outage must not kill the thread
                logger.warning("prediction log: %d rows dropped: %s", n_rows, error)
                self._count_dropped(n_rows)
                return 0
            return n_rows

    def _bin_counts(self, session: Session, taken: list[LoggedRequest]) -> list[dict[str, Any]]:
        """The bin counts of the requests whose inputs are not kept, summed per tenant, model,
        hour, feature and bin: the columns of ``PredictionBinCount`` rows."""
        counts: dict[tuple, int] = {}
        for request in taken:
            edges = None if request.keep_inputs else self._reference_edges(session, request)
            for feature, feature_edges in enumerate(edges or []):
                found = bin_counts(request.x[:, feature], feature_edges)
                for bin_ in np.flatnonzero(found).tolist():
                    key = (request.tenant, request.model_id, request.hour, feature, bin_)
                    counts[key] = counts.get(key, 0) + int(found[bin_])
        columns = ("tenant", "model_id", "hour", "feature", "bin")
        return [{**dict(zip(columns, key, strict=True)), "count": n} for key, n in counts.items()]

    def _reference_edges(self, session: Session, request: LoggedRequest) -> list | None:
        if request.model_id not in self._edges:
            blob = reference_blob(session, request.model_id)
            reference = None if blob is None else reference_from_npz(blob)
            edges = None if reference is None else [p.edges for p in reference.features]
            self._edges[request.model_id] = edges
        return self._edges[request.model_id]

    def clear(self) -> None:
        """Forget every buffered row and the drops counted (tests that share one app start
        each with an empty buffer)."""
        with self._flushing:
            self._take()
            self.dropped = 0

    def close(self) -> None:
        """Stop the thread after a last flush (the process is exiting)."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()
