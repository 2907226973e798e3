"""Granian's configuration from the settings, what each worker runs, and its access line
(gunicorn's, which the API wrote before it moved to Granian). The stops (drain, Ctrl-C) run for
real in tests/integration/test_balancer.py and tests/integration/test_run_command.py."""

import gc
import logging
import os
import signal
import sys
import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from granian import wsgi as granian_wsgi
from granian.server.mp import WorkerProcess
from gunicorn.config import AccessLogFormat, Config
from gunicorn.glogging import Logger
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser
from werkzeug.test import EnvironBuilder

from service.api import server
from service.api.events import THREADS_PER_PROCESS
from service.api.readiness import AlwaysReady
from service.api.server import ApiServer, ApiWorkerProcess
from service.api.turns import PredictionTurns
from service.logs import GroupWriteFileHandler, GroupWriteStreamHandler
from service.metrics_files import VARIABLE as METRICS_FOLDER
from service.settings import Settings


def settings_in(tmp_path, **values) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", **values)


def test_granian_serves_the_settings_address_with_a_thread_per_stream(tmp_path):
    settings = settings_in(tmp_path, host="0.0.0.0", port=8123, web_concurrency=3)
    api = ApiServer(settings)
    assert (api.bind_addr, api.bind_port, api.workers) == ("0.0.0.0", 8123, 3)
    assert api.blocking_threads == THREADS_PER_PROCESS
    assert api.respawn_failed_workers
    assert api.workers_kill_timeout == server.GRACEFUL_STOP_SECONDS


def test_access_log_is_read_from_the_environment():
    assert Settings.from_env({"ACCESS_LOG": "off"}).access_log == "off"


@pytest.fixture
def worker_parts(monkeypatch):
    """``app_in_worker`` with the app and the warm-up replaced: what it was given."""
    started = {}
    monkeypatch.setattr(server, "create_app", lambda settings, readiness: "app")
    monkeypatch.setattr(server, "start_warm_up", lambda *args: started.setdefault("args", args))
    return started


def test_a_worker_freezes_its_start_up_objects_once_warmed_up(tmp_path, worker_parts):
    server.app_in_worker(settings_in(tmp_path), "readiness", 3)
    assert worker_parts["args"] == ("app", "readiness", 3, server.freeze_long_lived_objects)


def test_a_request_without_host_gets_the_environ_gunicorn_gave_it(tmp_path, monkeypatch):
    """HAProxy's health check is an HTTP/1.0 GET without a Host header: Granian's environ has
    an empty HTTP_HOST and says HTTP/1."""
    monkeypatch.setattr(server, "start_warm_up", lambda *args: None)
    app = server.app_in_worker(settings_in(tmp_path), AlwaysReady(), 1)
    environ = EnvironBuilder(path="/health/live").get_environ()
    environ.update(HTTP_HOST="", SERVER_PROTOCOL="HTTP/1", SERVER_NAME="127.0.0.1")
    answered = []
    body = app(environ, lambda status, _headers, _exc=None: answered.append(status))
    assert answered == ["200 OK"], b"".join(body)
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0" and "HTTP_HOST" not in environ


class Protocol:
    """The one method of Granian's Rust protocol object that a list body calls."""

    def response_bytes(self, status: int, headers: list, body: bytes) -> None:
        self.answer = (status, body)


def test_a_request_environ_holds_nothing_of_the_process_environment(monkeypatch):
    """Granian copies the process's environment into every environ: the secrets go, and an
    HTTP_PROXY of the environment does not read as the request's Proxy header (httpoxy); the
    request's own headers and CGI variables stay, even where the environment has the name."""
    monkeypatch.setenv("SECRET_KEY", "not-for-requests")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("HTTP_USER_AGENT", "from-the-environment")
    monkeypatch.setenv("SERVER_PORT", "8000")
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b"ok"]

    handle = granian_wsgi._callback_wrapper(server.GranianEnvironMended(app), {})
    scope = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/v1/models",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "curl/8",
        "wsgi.url_scheme": "http",
    }
    protocol = Protocol()
    assert handle(protocol, scope) == 200 and protocol.answer == (200, b"ok")
    assert "SECRET_KEY" not in seen and "HTTP_PROXY" not in seen
    assert not {"PATH", "HOME"} & seen.keys()
    assert seen["HTTP_USER_AGENT"] == "curl/8" and seen["SERVER_PORT"] == "8000"
    assert seen["PATH_INFO"] == "/v1/models" and seen["wsgi.version"] == (1, 0)


@pytest.mark.parametrize("destination", ["-", "access.log"])
def test_the_access_log_follows_the_setting(tmp_path, worker_parts, destination):
    path = tmp_path / destination
    access_log = "-" if destination == "-" else str(path)
    settings = settings_in(tmp_path, access_log=access_log, predict_concurrency=0)
    logged = server.app_in_worker(settings, "readiness", 1).app
    assert isinstance(logged, server.CombinedLogFormatAccessLog) and logged.app == "app"
    (handler,) = logged.logger.handlers
    try:
        if destination == "-":
            assert type(handler) is GroupWriteStreamHandler and handler.stream is sys.stderr
        else:
            assert type(handler) is GroupWriteFileHandler and handler.baseFilename == str(path)
    finally:
        logged.logger.handlers = []
        handler.close()


@pytest.mark.parametrize("access_log", ["off", "-"])
def test_small_predictions_take_turns_around_the_access_line(tmp_path, worker_parts, access_log):
    settings = settings_in(tmp_path, access_log=access_log, predict_concurrency=3)
    turned = server.app_in_worker(settings, "readiness", 1).app
    assert isinstance(turned, PredictionTurns) and turned.turns.free == 3
    inner = turned.app if access_log == "off" else turned.app.app
    assert inner == "app"


def test_no_turns_with_predict_concurrency_0(tmp_path, worker_parts):
    settings = settings_in(tmp_path, predict_concurrency=0)
    assert server.app_in_worker(settings, "readiness", 1).app == "app"


def test_frozen_objects_are_out_of_the_collectors_reach():
    try:
        server.freeze_long_lived_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the test process's objects back where they were


class FakeReadiness:
    def __init__(self):
        self.marks = []

    def mark_warming(self, slot):
        self.marks.append(("warming", slot))

    def start_draining(self):
        self.marks.append(("draining",))


@pytest.fixture
def api(tmp_path, monkeypatch):
    """An ``ApiServer`` whose forks, readiness and stops are recorded, not made."""
    spawned, stops = [], []

    def spawn(_self, idx, _target, loader):
        spawned.append((idx, loader))
        return worker_that_ended(idx, exitcode=None, pid=1000 + len(spawned))

    monkeypatch.setattr(server.MPServer, "_spawn_worker", spawn)
    monkeypatch.setattr(
        server.MPServer, "signal_handler_interrupt", lambda self, *args: stops.append(args)
    )
    made = ApiServer(settings_in(tmp_path, drain_seconds=0.05))
    made.readiness = FakeReadiness()
    made.pid = os.getpid()  # as its ``startup`` sets it: this is the main process
    return made, spawned, stops


def worker_that_ended(idx: int, exitcode: int | None, pid: int = 1000) -> WorkerProcess:
    """Granian's worker object, its process not made: ``exitcode`` as ``join`` left it."""
    worker = WorkerProcess.__new__(WorkerProcess)
    worker.idx, worker.interrupt_by_parent = idx, False
    worker.inner = SimpleNamespace(pid=pid, exitcode=exitcode, join=lambda timeout=None: None)
    return worker


def test_each_worker_reports_in_the_slot_of_its_index_marked_warming_before_its_fork(
    api, monkeypatch, tmp_path
):
    made, spawned, _stops = api
    monkeypatch.setenv(METRICS_FOLDER, str(tmp_path))
    dead = []
    monkeypatch.setattr(server.multiprocess, "mark_process_dead", dead.append)
    loaded = []
    for idx in (0, 1, 0):  # the last: worker 1's successor
        made._spawn_worker(idx, "target", lambda slot: loaded.append(slot))
    assert made.readiness.marks == [("warming", 1), ("warming", 2), ("warming", 1)]
    for _idx, loader in spawned:
        loader()
    assert loaded == [1, 2, 1]
    assert dead == [1001]  # worker 1's figures: its live gauges dropped


def test_sigterm_drains_then_stops_and_a_second_stops_at_once(api):
    made, _spawned, stops = api
    made.signal_handler_interrupt(signal.SIGTERM, None)
    assert made.readiness.marks == [("draining",)]
    assert stops == []  # serving on while draining
    made.drain_timer.join(timeout=10)
    assert stops == [()]
    made.signal_handler_interrupt(signal.SIGTERM, None)
    assert stops == [(), ()]
    assert made.workers_kill_timeout == server.GRACEFUL_STOP_SECONDS


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGQUIT])
def test_ctrl_c_and_sigquit_stop_quickly_without_draining(api, number):
    made, _spawned, stops = api
    worker = SimpleNamespace(interrupt_by_parent=False)
    made.wrks = [worker]
    made.signal_handler_interrupt(number, None)
    assert stops == [()] and made.readiness.marks == []
    assert made.workers_kill_timeout == server.QUICK_STOP_SECONDS
    assert worker.interrupt_by_parent  # its own exit on the terminal's Ctrl-C is no crash


def watched(made, exitcode: int) -> ApiWorkerProcess:
    """A worker of ``made`` that ended with ``exitcode``, its watch running in a thread."""
    worker = made._spawn_worker(0, "target", lambda slot: None)
    worker.parent, worker.inner.exitcode = made, exitcode
    worker.watch = threading.Thread(target=worker._watcher)
    worker.watch.start()
    return worker


@pytest.mark.parametrize("exitcode", [0, -signal.SIGINT, -signal.SIGTERM, -signal.SIGQUIT])
def test_a_worker_that_ended_on_the_ctrl_c_before_the_main_process_heard_it_is_no_crash(
    api, exitcode
):
    """A terminal's Ctrl-C reaches the workers too: one can end before the main process's
    handler has run. Its watch waits for that handler instead of counting a crash."""
    made, _spawned, stops = api
    worker = watched(made, exitcode)
    assert worker.watch.is_alive()  # waiting for the main process to hear the signal
    made.signal_handler_interrupt(signal.SIGINT, None)
    worker.watch.join(timeout=10)
    assert worker.interrupt_by_parent and made.interrupt_children == []
    assert stops == [()]


@pytest.mark.parametrize("exitcode", [1, -signal.SIGSEGV, -signal.SIGKILL])
def test_a_worker_that_crashed_is_replaced_at_once(api, exitcode):
    made, _spawned, _stops = api
    worker = watched(made, exitcode)
    worker.watch.join(timeout=10)
    assert not worker.watch.is_alive() and made.interrupt_children == [0]
    assert not made.stop_heard.is_set()


def test_a_worker_stopped_on_its_own_is_replaced_once_no_stop_is_heard(api, monkeypatch):
    """``kill -TERM`` to one worker's pid: the main process hears nothing, Granian replaces it."""
    monkeypatch.setattr(server, "SAME_STOP_SECONDS", 0.05)
    made, _spawned, _stops = api
    worker = watched(made, 0)
    worker.watch.join(timeout=10)
    assert not worker.interrupt_by_parent and made.interrupt_children == [0]


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_a_worker_told_to_stop_before_it_has_handlers_of_its_own_dies_of_the_signal(api, number):
    """A worker runs the main process's handlers until Granian gives it its own (once its app
    is loaded): a stop sent meanwhile is not taken for the main process's."""
    made, _spawned, stops = api
    child = os.fork()
    if child == 0:  # the worker: the handler it inherited, as the signal would call it
        made.signal_handler_interrupt(number, None)
        os._exit(0)  # not reached when the signal kills it
    _pid, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == number
    assert stops == [] and made.readiness.marks == []


def gunicorns_request(raw_request: bytes, status: str, sent: int | None):
    """gunicorn's request, response and environ for ``raw_request`` answered with ``status``
    and ``sent`` bytes, parsed and built by gunicorn's own code as a worker does."""
    config = Config()
    request = next(iter(RequestParser(config, [raw_request], ("10.0.0.7", 5555))))
    socket = SimpleNamespace(sendall=lambda _data: None)
    response, environ = wsgi.create(request, socket, ("10.0.0.7", 5555), ("0.0.0.0", 8000), config)
    response.start_response(status, [("Content-Type", "application/json"), ("X-Model-Id", "2")])
    response.sent = sent
    return config, request, response, environ


def gunicorns_line(log_file, config, request, response, environ) -> str:
    """The line gunicorn's logger writes into ``log_file`` for the request (the file's handler
    closed and taken off gunicorn's access logger afterwards)."""
    config.set("accesslog", str(log_file))
    Logger(config).access(response, request, environ, timedelta(microseconds=812))
    access_log = logging.getLogger("gunicorn.access")
    (handler,) = [h for h in access_log.handlers if getattr(h, "baseFilename", "") == str(log_file)]
    access_log.removeHandler(handler)
    handler.close()
    return log_file.read_text()


def our_line(log_file, environ: dict, status: str, body: list[bytes]) -> str:
    """The line ``CombinedLogFormatAccessLog`` writes for an app answering ``status`` with
    ``body``, the body sent and closed as Granian does."""

    def app(_environ, start_response):
        start_response(status, [("Content-Type", "application/json")])
        return body

    logger = server.access_logger(str(log_file))
    try:
        answered = server.CombinedLogFormatAccessLog(app, logger)(environ, lambda *_args: None)
        assert b"".join(answered) == b"".join(body)
        answered.close()
    finally:
        for handler in logger.handlers:
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
ESCAPED = b"GET /v1/models/caf%C3%A9%20b/versions?x=%22 HTTP/1.1\r\nHost: api\r\n\r\n"


@pytest.mark.parametrize(
    ("raw_request", "status", "body"),
    [
        (PREDICT, "200 OK", [b"x" * 100, b"y" * 20]),
        (ODD, "404 NOT FOUND", []),
        (ESCAPED, "404 NOT FOUND", [b"{}"]),
    ],
)
def test_the_access_line_is_gunicorns(monkeypatch, tmp_path, raw_request, status, body):
    now = "[07/Dec/2026:15:28:33 +0000]"
    monkeypatch.setattr(Logger, "now", lambda _self: now)
    monkeypatch.setattr(server.time, "strftime", lambda _format: now)
    sent = sum(len(chunk) for chunk in body)
    config, request, response, environ = gunicorns_request(raw_request, status, sent)
    line = our_line(tmp_path / "ours.log", dict(environ), status, body)
    assert line == gunicorns_line(tmp_path / "gunicorns.log", config, request, response, environ)
    assert line.startswith("10.0.0.7 ") and line.count("\n") == 1


def test_the_api_writes_gunicorns_default_access_line():
    assert AccessLogFormat.default == server.COMBINED_LOG_FORMAT
