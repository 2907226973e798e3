"""What a prediction's two log lines cost the API's process, before and after issue 29's third
round: the app's JSON line (service/logs.py's ``JsonFormatter`` against python-json-logger's,
which wrote the same line before) and the access line in Apache's combined log format
(service/api/server.py's ``access_atoms``, as ``backprop api`` writes it under Granian, against
gunicorn's ``Logger``, which wrote it before).

    python -m bench.log_lines [--lines 20000] [--rounds 5]

The app's line is ``log_request``'s (service/api/request_hooks.py) for a ``/v1`` predict with a
key and a request id, through the service's handler as every process installs it; gunicorn's is
``access`` for the same request parsed by gunicorn's own parser, its response and environ built
by gunicorn's ``wsgi.create`` as a gthread worker does; ours is written from the same environ.
All write to /dev/null. The variants
take turns ``--rounds`` times; each prints the process's CPU time per line in microseconds
(median and best of the rounds); for the JSON line also the formatter's ``format`` alone.
"""

import argparse
import json
import logging
import statistics
import time
from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser
from pythonjsonlogger.json import JsonFormatter as PythonJsonLoggerFormatter
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from service.api.auth import Principal
from service.api.request_hooks import log_request, request_log
from service.api.server import COMBINED_LOG_FORMAT, access_atoms, access_logger
from service.logs import JSON_NAMES, REQUEST_ID, log_handler
from service.settings import Settings
from service.vocabulary import Scope

PATH = "/v1/models/digits@production/predict"
BODY = json.dumps({"instances": [[0.0] * 64]}).encode()
HEADERS = {"Authorization": "Bearer bp_1.0123456789abcdef", "User-Agent": "wrk"}
PYTHON_JSON_LOGGER = PythonJsonLoggerFormatter(
    "{levelname}{name}{process}{message}", style="{", rename_fields=JSON_NAMES, timestamp="time"
)


def cpu_microseconds(write_line, lines: int) -> float:
    start = time.process_time()
    for _ in range(lines):
        write_line()
    return (time.process_time() - start) / lines * 1e6


def json_line_writers() -> dict:
    """For each formatter: the request's whole log line, and its ``format`` alone."""
    handler = log_handler(Settings())
    handler.setStream(open("/dev/null", "w"))  # noqa: SIM115
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    REQUEST_ID.set("0123456789abcdef0123456789abcdef")
    request = Request(EnvironBuilder(path=PATH, method="POST", data=BODY).get_environ())
    principal = Principal("default", Scope.READ, 1)
    record = request_log.makeRecord(
        request_log.name, logging.INFO, __file__, 1, "%s %s %s", ("POST", PATH, 200), None
    )
    handler.filter(record)
    writers = {}
    for name, formatter in (
        ("python-json-logger", PYTHON_JSON_LOGGER),
        ("ours", handler.formatter),
    ):

        def write_line(formatter=formatter):
            handler.formatter = formatter
            log_request(request, principal, "/v1/models/<ref>/predict", 200, 0.000812)

        writers[f"JSON line, {name}"] = write_line
        writers[f"JSON line, {name}: its format alone"] = lambda f=formatter: f.format(record)
    return writers


def access_line_writers() -> dict:
    """gunicorn's logger's access line for the predict request, and ours."""
    config = Config()
    config.set("accesslog", "/dev/null")
    raw = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    raw += "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())
    raw += f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    peer = ("127.0.0.1", 50000)
    request = next(iter(RequestParser(config, [raw.encode() + BODY], peer)))
    socket = SimpleNamespace(sendall=lambda _data: None)
    response, environ = wsgi.create(request, socket, peer, ("127.0.0.1", 8000), config)
    response.start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("X-Request-ID", "0" * 32), ("X-Model-Id", "2")],
    )
    response.sent = 120
    took = timedelta(microseconds=812)

    gunicorns = Logger(config)
    ours = access_logger("/dev/null")
    return {
        "access line, gunicorn's Logger": lambda: gunicorns.access(
            response, request, environ, took
        ),
        "access line, ours": lambda: ours.info(
            COMBINED_LOG_FORMAT, access_atoms(environ, "200 OK", 120)
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    writers = {**json_line_writers(), **access_line_writers()}
    timings: dict[str, list[float]] = {name: [] for name in writers}
    for _ in range(args.rounds):
        for name, write_line in writers.items():
            timings[name].append(cpu_microseconds(write_line, args.lines))
    print("| line | CPU us per line, median | best |")
    print("| --- | ---: | ---: |")
    for name, rounds in timings.items():
        print(f"| {name} | {statistics.median(rounds):.1f} | {min(rounds):.1f} |")


if __name__ == "__main__":
    main()
