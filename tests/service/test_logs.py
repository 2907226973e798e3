"""The JSON log line: byte for byte python-json-logger's ``JsonFormatter`` line for the same
record, as configured before the formatter of our own (service/logs.py)."""

import dataclasses
import enum
import logging
import sys
from datetime import UTC, datetime

import pytest
from pythonjsonlogger.json import JsonFormatter as PythonJsonLoggerFormatter

from service.logs import JSON_NAMES, RequestIdFilter, formatter, request_id_set

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
