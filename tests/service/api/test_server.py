"""gunicorn's configuration from the settings, and its access line."""

import gc
import io
import logging
import socket
from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.config import AccessLogFormat, Config
from gunicorn.glogging import Logger
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from service.api import server
from service.api.server import GunicornApp
from service.settings import Settings


@pytest.mark.parametrize(
    ("access_log", "configured"), [("-", "-"), ("off", None), ("a.log", "a.log")]
)
def test_the_access_log_follows_the_setting(tmp_path, access_log, configured):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", access_log=access_log)
    assert GunicornApp(settings).cfg.accesslog == configured


def test_access_log_is_read_from_the_environment():
    assert Settings.from_env({"ACCESS_LOG": "off"}).access_log == "off"


def test_a_worker_freezes_its_start_up_objects_once_warmed_up(monkeypatch):
    started = {}
    monkeypatch.setattr(server, "start_warm_up", lambda *args: started.setdefault("args", args))
    worker = SimpleNamespace(
        wsgi="app", app=SimpleNamespace(readiness="readiness"), readiness_slot=3
    )
    server.warm_up_in_background(worker)
    assert started["args"] == ("app", "readiness", 3, server.freeze_long_lived_objects)


def test_frozen_objects_are_out_of_the_collectors_reach():
    try:
        server.freeze_long_lived_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the test process's objects back where they were


def kept_alive(sock, read_ahead: bytes = b"") -> SimpleNamespace:
    """What ``next_request_arrives`` reads of a gthread connection: its socket and parser."""
    return SimpleNamespace(
        sock=sock, parser=SimpleNamespace(unreader=SimpleNamespace(buf=io.BytesIO(read_ahead)))
    )


def test_a_thread_keeps_a_connection_whose_next_request_comes_at_once():
    ours, client = socket.socketpair()
    with ours, client:
        assert not server.next_request_arrives(kept_alive(ours))  # nothing within the wait
        assert server.next_request_arrives(kept_alive(ours, b"GET / HTTP/1.1\r\n"))  # read ahead
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert server.next_request_arrives(kept_alive(ours))
        ours.recv(100)
        client.close()  # a closed connection is for the thread to finish reading
        assert server.next_request_arrives(kept_alive(ours))


def served(raw_request: bytes, status: str, sent: int | None, access_log_format: str):
    """gunicorn's request, response and environ for ``raw_request`` answered with ``status``
    and ``sent`` bytes, parsed and built by gunicorn's own code as a worker does."""
    config = Config()
    config.set("access_log_format", access_log_format)
    request = next(iter(RequestParser(config, [raw_request], ("10.0.0.7", 5555))))
    socket = SimpleNamespace(sendall=lambda _data: None)
    response, environ = wsgi.create(request, socket, ("10.0.0.7", 5555), ("0.0.0.0", 8000), config)
    response.start_response(status, [("Content-Type", "application/json"), ("X-Model-Id", "2")])
    response.sent = sent
    return config, request, response, environ


def access_line(logger_class, log_file, config, request, response, environ) -> str:
    """The line ``logger_class`` writes into ``log_file`` for the request (the file's handler
    closed and taken off gunicorn's access logger afterwards)."""
    config.set("accesslog", str(log_file))
    logger_class(config).access(response, request, environ, timedelta(microseconds=812))
    access_log = logging.getLogger("gunicorn.access")
    (handler,) = [h for h in access_log.handlers if getattr(h, "baseFilename", "") == str(log_file)]
    access_log.removeHandler(handler)
    handler.close()
    return log_file.read_text()


PREDICT = (
    b"POST /v1/models/digits@production/predict HTTP/1.1\r\nHost: api:8000\r\n"
    b"User-Agent: wrk\r\nAuthorization: Bearer bp_1.secret\r\nContent-Length: 2\r\n\r\n{}"
)
ODD = (
    b'GET /v1/jobs?state="done"&x=1 HTTP/1.0\r\nUser-Agent: say "hi"\r\n'
    b"Referer: http://example.com/a b\r\nAuthorization: Basic YWxpY2U6czNjcmV0\r\n\r\n"
)


@pytest.mark.parametrize(
    ("raw_request", "status", "sent"),
    [(PREDICT, "200 OK", 120), (ODD, "404 NOT FOUND", 0), (ODD, "500 INTERNAL", None)],
)
@pytest.mark.parametrize(
    "access_log_format", [server.COMBINED_LOG_FORMAT, '%(h)s "%({x-model-id}o)s" %(D)s %(B)s']
)
def test_the_access_line_is_gunicorns(
    monkeypatch, tmp_path, raw_request, status, sent, access_log_format
):
    monkeypatch.setattr(Logger, "now", lambda _self: "[07/Dec/2026:15:28:33 +0000]")
    served_request = served(raw_request, status, sent, access_log_format)
    line = access_line(server.CombinedLogFormatLogger, tmp_path / "ours.log", *served_request)
    assert line == access_line(Logger, tmp_path / "gunicorns.log", *served_request)
    assert line.startswith("10.0.0.7 ") and line.count("\n") == 1


def test_the_api_writes_gunicorns_default_access_line(tmp_path):
    assert AccessLogFormat.default == server.COMBINED_LOG_FORMAT
    app = GunicornApp(Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}"))
    assert app.cfg.logger_class is server.CombinedLogFormatLogger
    assert app.cfg.access_log_format == server.COMBINED_LOG_FORMAT
