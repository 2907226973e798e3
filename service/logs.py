"""Log lines for every process (API, worker, dispatcher): one JSON object a line, or text, as
``LOG_FORMAT`` says, carrying the request id of the request (or of the job's submission) they
belong to.

The request id lives in a context variable: the API sets it for each request, the worker for
each job it trains (``training_jobs.request_id``), and ``RequestIdFilter`` copies it onto every
record. No Flask here: the worker and the dispatcher use this module too.
"""

import contextvars
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonEncoder

from service.settings import Settings

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
# The attributes every record has (and the two a formatter adds): anything else on a record is
# an ``extra`` field (or the request id) and goes into its JSON line.
RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# The JSON names of a record's level and logger, which a ``dict`` message's keys take too.
JSON_NAMES = {"levelname": "level", "name": "logger"}


class RequestIdFilter(logging.Filter):
    """Puts the current request id on a record as ``request_id`` (nothing when there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None:
            record.request_id = request_id
        return True


class TextFormatter(logging.Formatter):
    """The text line, ending with the request id when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return line if request_id is None else f"{line} [request {request_id}]"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``level``, ``logger``, ``process``, ``message``, the traceback
    (``exc_info``) and stack (``stack_info``) when there are, the record's ``extra`` fields and
    request id, then ``time`` (ISO 8601, UTC).

    Byte for byte the line python-json-logger's ``JsonFormatter`` wrote for these fields (a
    ``dict`` message's keys are fields and its ``message`` is empty; a value JSON has no type
    for is written by python-json-logger's encoder), built straight from the record in about
    60% of the time its generic field machinery took for every request's line
    (docs/benchmarks.md)."""

    encoder = JsonEncoder()

    def format(self, record: logging.LogRecord) -> str:
        fields = record.msg if isinstance(record.msg, dict) else None
        record.message = "" if fields is not None else record.getMessage()
        line = {
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.message,
        }
        if fields is not None:
            line.update((JSON_NAMES.get(key, key), value) for key, value in fields.items())
        if record.exc_info and not line.get("exc_info"):
            line["exc_info"] = self.formatException(record.exc_info)
        if record.exc_text and not line.get("exc_info"):
            line["exc_info"] = record.exc_text
        if record.stack_info and not line.get("stack_info"):
            line["stack_info"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in RECORD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        line["time"] = datetime.fromtimestamp(record.created, UTC).isoformat()
        return self.encoder.encode(line)


class GroupWrites:
    """A handler's lines written by one thread at a time, in groups: a line that comes while
    another thread is writing is left for that thread, which writes every line waiting when
    its own write ends in one more write (group commit, as a database's log does).

    Alone, a line is written at once, by its own thread, as a stream handler writes it. Under
    load the lines of the requests that end during one write go out in the next: one system
    call, and one release of the GIL around it, for many lines. Written one by one, a request's
    line cost a Granian worker about 0.15 ms of CPU at 16 connections, against 13 us in
    process; in groups most of that is gone (docs/benchmarks.md). When ``emit`` returns its
    line has been written, or will be by a thread already writing: no line is left behind for
    a timer or for the process's exit.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.waiting: list[str] = []
        self.writer_busy = False
        self.waiting_lock = threading.Lock()

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        """``logging.Handler.handle`` without its lock around ``emit``: the lock would make
        each thread wait for the others' writes instead of leaving its line to them."""
        kept = self.filter(record)
        if isinstance(kept, logging.LogRecord):  # Python 3.12's filters may return a record
            record = kept
        if kept:
            self.emit(record)
        return kept

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        with self.waiting_lock:
            self.waiting.append(line)
            if self.writer_busy:
                return
            self.writer_busy = True
        self.write_waiting_lines(record)

    def write_waiting_lines(self, record: logging.LogRecord) -> None:
        """Write the lines waiting, and those that come meanwhile, until none is left."""
        while True:
            with self.waiting_lock:
                lines, self.waiting = self.waiting, []
                if not lines:
                    self.writer_busy = False
                    return
            try:
                self.stream.write("".join(lines))
                self.flush()
            except Exception:
                self.handleError(record)


class GroupWriteStreamHandler(GroupWrites, logging.StreamHandler):
    """A stream handler writing in groups (:class:`GroupWrites`)."""


class GroupWriteFileHandler(GroupWrites, logging.FileHandler):
    """A file handler writing in groups (:class:`GroupWrites`)."""


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``LOG_FORMAT``: ``json`` or ``text`` (settings allow no other)."""
    if log_format == "text":
        return TextFormatter(TEXT_FORMAT)
    return JsonFormatter()


def log_handler(settings: Settings) -> logging.Handler:
    """A stderr handler in ``settings.log_format`` that adds the request id to every record."""
    handler = GroupWriteStreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(settings: Settings) -> None:
    """Send this process's log records to stderr, in ``LOG_FORMAT`` at ``LOG_LEVEL``, replacing
    whatever handlers the root logger had (Alembic's, an earlier call's)."""
    logging.basicConfig(level=settings.log_level, handlers=[log_handler(settings)], force=True)


@contextmanager
def request_id_set(request_id: str | None) -> Iterator[None]:
    """Log lines written in this block (in this thread) carry ``request_id``."""
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)
