"""The JSON log line: byte for byte python-json-logger's ``JsonFormatter`` line for the same
record, as configured before the formatter of our own (service/logs.py); and the handler that
writes the lines of many threads in groups."""

import dataclasses
import enum
import io
import logging
import sys
import threading
from datetime import UTC, datetime

import pytest
from pythonjsonlogger.json import JsonFormatter as PythonJsonLoggerFormatter

from service.logs import (
    JSON_NAMES,
    GroupWriteStreamHandler,
    RequestIdFilter,
    formatter,
    request_id_set,
)

PYTHON_JSON_LOGGER = PythonJsonLoggerFormatter(
    "{levelname}{name}{process}{message}", style="{", rename_fields=JSON_NAMES, timestamp="time"
)
REQUEST_LINE = {
    "route": "/v1/models/<ref>/predict",
    "method": "POST",
    "status": 200,
    "duration_ms": 0.812,
    "tenant": "acme",
    "key_id": 3,
    "remote_addr": "127.0.0.1",
}


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


def record(
    msg: object = "%s %s %s", args: tuple = ("POST", "/v1/x", 200), exc_info=None, **options
) -> logging.LogRecord:
    """A record as ``Logger.makeRecord`` makes it, ``extra`` fields and all."""
    return logging.getLogger("service.requests").makeRecord(
        "service.requests", logging.INFO, __file__, 7, msg, args, exc_info, func="f", **options
    )


def raised() -> tuple:
    try:
        raise ValueError('bad "row"')
    except ValueError:
        return sys.exc_info()


def records() -> dict[str, logging.LogRecord]:
    stacked = record(sinfo="Stack (most recent call last):\n  File 'x.py', line 1")
    with_text = record()
    with_text.exc_text = "Traceback (most recent call last):\n  ValueError: cached"
    on_the_second = record()
    on_the_second.created = 1_700_000_000.0  # no microseconds: isoformat leaves them out
    return {
        "request line": record(extra=REQUEST_LINE),
        "no arguments": record("between requests", ()),
        "not ASCII": record("caf\u00e9 \u2603 %s", ("\U0001f600",)),
        "exception": record("failed", (), exc_info=raised()),
        "exception text only": with_text,
        "stack": stacked,
        "dict message": record({"name": "renamed", "count": 2, "exc_info": None}, ()),
        "values JSON has no type for": record(
            extra={
                "when": datetime(2026, 12, 7, 15, 0, tzinfo=UTC),
                "colour": Colour.RED,
                "raw": b"\x00\xff",
                "point": Point(1),
                "error": ValueError("x"),
                "kind": int,
                "other": object(),
            }
        ),
        "time on the second": on_the_second,
        "an extra named time": record(extra={"time": "mine", "_private": 1}),
    }


@pytest.mark.parametrize("name", records())
@pytest.mark.parametrize("request_id", [None, "req-1"])
def test_the_json_line_is_python_json_loggers(name, request_id):
    line = records()[name]
    with request_id_set(request_id):
        RequestIdFilter().filter(line)
    assert formatter("json").format(line) == PYTHON_JSON_LOGGER.format(line)


def test_the_request_line_keys_in_order():
    line = record(extra=REQUEST_LINE)
    with request_id_set("req-1"):
        RequestIdFilter().filter(line)
    written = formatter("json").format(line)
    assert written.startswith(
        '{"level": "INFO", "logger": "service.requests", "process": '
    ) and written.endswith(
        ', "message": "POST /v1/x 200", "route": "/v1/models/<ref>/predict", "method": "POST",'
        ' "status": 200, "duration_ms": 0.812, "tenant": "acme", "key_id": 3,'
        ' "remote_addr": "127.0.0.1", "request_id": "req-1", "time": "'
        + datetime.fromtimestamp(line.created, UTC).isoformat()
        + '"}'
    )


class HeldStream(io.StringIO):
    """A stream whose first write waits until ``release`` is set, recording every write."""

    def __init__(self):
        super().__init__()
        self.writes: list[str] = []
        self.first_write_started = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        if not self.writes:
            self.first_write_started.set()
            assert self.release.wait(10)
        self.writes.append(text)
        return super().write(text)


def group_logger(stream: io.StringIO, name: str) -> logging.Logger:
    handler = GroupWriteStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_a_line_alone_is_written_at_once_by_its_own_thread():
    stream = io.StringIO()
    logger = group_logger(stream, "test.group.alone")
    logger.info("one")
    assert stream.getvalue() == "one\n"
    logger.info("two")
    assert stream.getvalue() == "one\ntwo\n"


def test_lines_that_come_during_a_write_go_out_together_in_the_next():
    stream = HeldStream()
    logger = group_logger(stream, "test.group.held")
    first = threading.Thread(target=logger.info, args=("first",))
    first.start()
    assert stream.first_write_started.wait(10)
    # Each of these returns at once: a write is under way, so its line is left to the writer.
    others = [threading.Thread(target=logger.info, args=(f"line {n}",)) for n in range(5)]
    for thread in others:
        thread.start()
        thread.join(10)
        assert not thread.is_alive()
    assert stream.writes == []
    stream.release.set()
    first.join(10)
    assert stream.writes == ["first\n", "".join(f"line {n}\n" for n in range(5))]


def test_every_line_of_many_threads_is_written_once_and_whole():
    stream = io.StringIO()
    logger = group_logger(stream, "test.group.many")

    def log_lines(thread: int) -> None:
        for n in range(200):
            logger.info("thread %d line %d", thread, n)

    threads = [threading.Thread(target=log_lines, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written = stream.getvalue().splitlines()
    assert sorted(written) == sorted(f"thread {t} line {n}" for t in range(8) for n in range(200))


def test_a_filter_still_drops_a_line_and_adds_the_request_id():
    stream = io.StringIO()
    logger = group_logger(stream, "test.group.filters")
    handler = logger.handlers[0]
    handler.setFormatter(formatter("text"))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(lambda record: record.getMessage() != "dropped")
    with request_id_set("req-9"):
        logger.info("dropped")
        logger.info("kept")
    assert stream.getvalue().count("\n") == 1
    assert stream.getvalue().endswith(" kept [request req-9]\n")


def test_a_failed_write_is_reported_and_the_next_line_still_written(monkeypatch):
    stream = io.StringIO()
    logger = group_logger(stream, "test.group.failure")
    handler = logger.handlers[0]
    failures = []
    monkeypatch.setattr(handler, "handleError", failures.append)
    real_write = stream.write
    monkeypatch.setattr(stream, "write", lambda text: 1 / 0)
    logger.info("lost")
    monkeypatch.setattr(stream, "write", real_write)
    logger.info("after")
    assert [record.getMessage() for record in failures] == ["lost"]
    assert stream.getvalue() == "after\n"
