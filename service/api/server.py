"""``backprop api``: the Flask app under Granian's WSGI server, one app per worker process.

Granian's main process forks ``WEB_CONCURRENCY`` workers (``fork`` is Python's start method on
Linux up to 3.13, which Granian keeps), each running its Rust HTTP server and up to
``THREADS_PER_PROCESS`` Python threads for the app. ``ApiServer`` adds to Granian's
``MPServer`` what the API needs of its server (docs/operations.md): the warm-up behind
/health/ready, the drain on SIGTERM, a quick stop on Ctrl-C, prometheus_client's multiprocess
figures and the access line in Apache's combined log format. It overrides two of
``MPServer``'s methods (``_spawn_worker``, ``signal_handler_interrupt``) and its workers' watch
(``ApiWorkerProcess``), hence the pinned minor version of granian in pyproject.toml.
"""

import argparse
import base64
import binascii
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from urllib.parse import quote

from granian.constants import Interfaces
from granian.log import LogLevels
from granian.server.mp import MPServer, WorkerProcess
from prometheus_client import multiprocess

from service.api.app import create_app
from service.api.events import THREADS_PER_PROCESS
from service.api.readiness import ServerReadiness, start_warm_up
from service.api.turns import PredictionTurns
from service.logs import GroupWriteFileHandler, GroupWriteStreamHandler, configure_logging
from service.metrics_files import VARIABLE as METRICS_FOLDER
from service.metrics_files import remove_metrics_folder
from service.settings import Settings

# How long a stop waits for the requests in flight (an event stream among them) before the
# workers are killed: gunicorn's graceful timeout, which the deployments' grace periods allow
# for (docker-compose.yml, deploy/kubernetes), and on Ctrl-C, which stops quickly.
GRACEFUL_STOP_SECONDS = 30
QUICK_STOP_SECONDS = 1
# Connections the kernel queues for the listener (gunicorn's default).
BACKLOG = 2048
# How a worker ends on a stop signal of its own: Granian's handler returns (status 0), or the
# signal kills it before that handler is in place (``stop_now``).
ENDED_ON_A_STOP_SIGNAL = frozenset({0, -signal.SIGINT, -signal.SIGTERM, -signal.SIGQUIT})
# How long the watch of a worker that ended so waits for the main process to hear the same
# signal (a terminal's Ctrl-C reaches both) before counting the end as a crash.
SAME_STOP_SECONDS = 2.0
# Granian's own logger: its lines and ours about the server in one format.
granian_log = logging.getLogger("_granian")


class ApiServer(MPServer):
    """Granian's multi-process server, serving ``create_app(settings)`` in each worker.

    * Each worker has a readiness slot, its index: marked warming in the main process before
      the fork (a dead worker's successor too), marked ready by the worker once warmed up.
    * SIGTERM drains for DRAIN_SECONDS: /health/ready answers 503 and requests are served, so
      that a load balancer takes the server out of rotation before it stops taking
      connections; then Granian's graceful stop (the listener closed, requests in flight
      finished, at most ``GRACEFUL_STOP_SECONDS``). A second SIGTERM ends the drain there.
    * SIGINT (Ctrl-C) and SIGQUIT stop quickly: requests in flight get ``QUICK_STOP_SECONDS``.
    * A worker that dies is replaced; prometheus_client drops its live gauges then.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        # Mapped here, in the main process, so that every worker forked later shares it.
        self.readiness = ServerReadiness(settings.web_concurrency)
        self.worker_in_slot: dict[int, WorkerProcess] = {}
        self.drain_timer: threading.Timer | None = None
        self.stop_heard = threading.Event()
        super().__init__(
            "backprop api",
            address=settings.host,
            port=settings.port,
            interface=Interfaces.WSGI,
            workers=settings.web_concurrency,
            blocking_threads=THREADS_PER_PROCESS,
            backlog=BACKLOG,
            respawn_failed_workers=True,
            workers_kill_timeout=GRACEFUL_STOP_SECONDS,
            log_level=LogLevels(settings.log_level.lower()),
        )
        self.on_shutdown(remove_metrics_folder)

    def serve(self) -> None:
        signal.signal(signal.SIGQUIT, self.signal_handler_interrupt)
        loader = partial(app_in_worker, self.settings, self.readiness)
        super().serve(target_loader=loader, wrap_loader=False)

    def _spawn_worker(self, idx: int, target, callback_loader) -> WorkerProcess:
        """In the main process, before each fork: the worker's slot marked warming, and the
        loader told which slot it reports in."""
        slot = idx + 1
        self.readiness.mark_warming(slot)
        self.forget_dead_worker(slot)
        worker = super()._spawn_worker(idx, target, partial(callback_loader, slot))
        worker.__class__ = ApiWorkerProcess  # its watch, not yet started (``start``)
        self.worker_in_slot[slot] = worker
        return worker

    def forget_dead_worker(self, slot: int) -> None:
        """prometheus_client drops the live gauges of the worker that had ``slot``; its
        counters stay, summed into the totals (prometheus_client's recipe for forking servers)."""
        dead = self.worker_in_slot.pop(slot, None)
        if dead is not None and dead.inner.pid and os.environ.get(METRICS_FOLDER) is not None:
            multiprocess.mark_process_dead(dead.inner.pid)

    def signal_handler_interrupt(self, signal_number: int | None = None, _frame=None) -> None:
        """Granian's handler of SIGINT and SIGTERM (and ours of SIGQUIT), in the main thread."""
        if os.getpid() != self.pid:
            stop_now(signal_number)
        self.stop_heard.set()
        seconds = self.settings.drain_seconds
        if signal_number == signal.SIGTERM and self.drain_timer is None and seconds > 0:
            self.readiness.start_draining()
            self.drain_timer = threading.Timer(seconds, super().signal_handler_interrupt)
            self.drain_timer.daemon = True
            self.drain_timer.start()
            granian_log.info("Draining for %s s: /health/ready answers 503, serving", seconds)
            return
        if signal_number != signal.SIGTERM:
            self.workers_kill_timeout = QUICK_STOP_SECONDS
        for worker in self.wrks:
            worker.interrupt_by_parent = True
        super().signal_handler_interrupt()


class ApiWorkerProcess(WorkerProcess):
    """Granian's worker process, whose end on the stop signal the main process hears too is
    not taken for a crash.

    A terminal's Ctrl-C reaches every process of the group at once. A worker can hear it, stop
    and exit before the main process's handler has run (on a busy machine, by a few
    milliseconds: seen in about 1 stop in 20 with four servers starting beside each other);
    Granian's watch would then log "Unexpected exit", and the server would end with status 1.
    So a worker that ended as a worker ends on a stop signal (``ENDED_ON_A_STOP_SIGNAL``) is
    watched ``SAME_STOP_SECONDS`` longer for the main process's handler. A worker stopped on
    its own (``kill -TERM`` to its pid) is still replaced, that much later; one that crashed
    (status 1, SIGSEGV, SIGKILL) at once."""

    def _watcher(self) -> None:
        self.inner.join()
        if (
            self.inner.exitcode in ENDED_ON_A_STOP_SIGNAL
            and not self.interrupt_by_parent
            and self.parent.stop_heard.wait(SAME_STOP_SECONDS)
        ):
            self.interrupt_by_parent = True
        super()._watcher()


def stop_now(signal_number: int) -> None:
    """In a worker that hears a stop before Granian has given it handlers of its own (it runs
    the main process's until its app is loaded; always for SIGQUIT): die of the signal, as a
    process without a handler would, rather than go on serving until the main process's wait
    for it (``GRACEFUL_STOP_SECONDS``) ends and it is killed."""
    signal.signal(signal_number, signal.SIG_DFL)
    os.kill(os.getpid(), signal_number)


def app_in_worker(settings: Settings, readiness: ServerReadiness, slot: int):
    """In a new worker, once forked: the app, its warm-up started in a thread (the worker
    freezes what it has built, then reports ready in ``slot``), the access line if asked, and
    small predictions in turns unless ``PREDICT_CONCURRENCY`` is 0."""
    app = create_app(settings, readiness)
    start_warm_up(app, readiness, slot, freeze_long_lived_objects)
    if settings.access_log != "off":
        app = CombinedLogFormatAccessLog(app, access_logger(settings.access_log))
    if settings.predict_concurrency > 0:
        app = PredictionTurns(app, settings.predict_concurrency)
    return GranianEnvironMended(app)


# The variables a WSGI server sets for each request (PEP 3333, with CGI's), whatever the
# process's environment holds under the same names.
CGI_VARIABLES = frozenset(
    {
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "GATEWAY_INTERFACE",
        "PATH_INFO",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
    }
)


class GranianEnvironMended:
    """``app`` given the environ gunicorn gave it, where Granian 2.8's differs: a request with
    no ``Host`` header (HAProxy's health checks, HTTP/1.0 clients) gets an empty ``HTTP_HOST``,
    which werkzeug takes for the request's host instead of the server's address (a 403 with
    ``AUTH=off``, service/api/web_pages.py), and an HTTP/1.0 request says ``HTTP/1``.

    And Granian starts every request's environ from a copy of the process's environment
    (granian/wsgi.py, ``basic_env``): ``DATABASE_URL`` and ``SECRET_KEY`` would travel with each
    request, within reach of any code that logs or reports an environ, and a proxy setting of
    the environment (``HTTP_PROXY``) would read as a request's ``Proxy`` header (httpoxy). So
    each variable of the process's environment is taken out again, unless the request itself
    gave it another value (a header) or it is one of the request's CGI variables.
    """

    def __init__(self, app: Callable):
        self.app = app
        self.process_variables = {
            name: value for name, value in os.environ.items() if name not in CGI_VARIABLES
        }

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        for name, value in self.process_variables.items():
            if environ.get(name) == value:
                del environ[name]
        if environ.get("HTTP_HOST") == "":
            del environ["HTTP_HOST"]
        if environ["SERVER_PROTOCOL"] == "HTTP/1":
            environ["SERVER_PROTOCOL"] = "HTTP/1.0"
        return self.app(environ, start_response)


def freeze_long_lived_objects() -> None:
    """Collect once, then move every object the worker has so far (its modules, the app, the
    warmed models: about 240,000) out of the collector's reach for good (``gc.freeze``).

    Python's oldest generation is collected whenever the objects that survived into it since
    its last collection outnumber a quarter of those it already holds; each such collection
    walks every one of them, holding the GIL: 120 to 250 ms of CPU in an API worker, a stall of
    every request in flight in the process, every few thousand requests (docs/benchmarks.md,
    "The tail at 16 connections"). Frozen, they are never walked again; the objects made by
    requests are collected as before. The one collection here runs before the worker reports
    ready, so no request waits for it. A frozen object nothing refers to any more (a warmed
    model evicted from the cache later) is still freed by its reference count; only one caught
    in a reference cycle would be kept for the process's life."""
    gc.collect()
    gc.freeze()


# gunicorn's default access line (Apache's combined log format), the one the API writes.
COMBINED_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
# Characters a request target keeps unescaped in the line's request (RFC 3986's pchar).
PATH_SAFE = "/:@!$&'()*+,;=~"


def access_logger(destination: str) -> logging.Logger:
    """``ACCESS_LOG``'s logger: "-" is stderr, anything else a file path. Made in the worker,
    after Granian has configured its own loggers (which closes every handler made before)."""
    handler = (
        GroupWriteStreamHandler() if destination == "-" else GroupWriteFileHandler(destination)
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("backprop.access")
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


class CombinedLogFormatAccessLog:
    """WSGI middleware writing gunicorn's access line for each request once its body is sent:
    Granian's own access log has no size, user nor referer, and another time format."""

    def __init__(self, app: Callable, logger: logging.Logger):
        self.app = app
        self.logger = logger

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        answer = {"status": "500"}

        def start(status: str, headers: list, exc_info=None):
            answer["status"] = status
            return start_response(status, headers, exc_info)

        return LoggedBody(self.app(environ, start), lambda sent: self.log(environ, answer, sent))

    def log(self, environ: dict, answer: dict, sent: int | None) -> None:
        self.logger.info(COMBINED_LOG_FORMAT, access_atoms(environ, answer["status"], sent))


class LoggedBody:
    """A response body that counts the bytes it hands out and reports them once closed."""

    def __init__(self, body: Iterable[bytes], report: Callable[[int | None], None]):
        self.body = body
        self.report = report
        self.sent: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        self.sent = 0
        for chunk in self.body:
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self.report(self.sent)


def access_atoms(environ: dict, status: str, sent: int | None) -> dict:
    """The nine values of the combined log format, each ``"`` escaped as gunicorn does."""
    # PATH_INFO is the path's bytes, percent-decoded, as latin-1 (PEP 3333).
    target = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe=PATH_SAFE)
    if environ.get("QUERY_STRING"):
        target = f"{target}?{environ['QUERY_STRING']}"
    atoms = {
        "h": environ.get("REMOTE_ADDR", "-"),
        "l": "-",
        "u": basic_auth_user(environ) or "-",
        "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
        "r": f"{environ['REQUEST_METHOD']} {target} {environ['SERVER_PROTOCOL']}",
        "s": status.split(None, 1)[0],
        "b": "-" if sent is None else str(sent),
        "f": environ.get("HTTP_REFERER", "-"),
        "a": environ.get("HTTP_USER_AGENT", "-"),
    }
    return {key: value.replace('"', '\\"') for key, value in atoms.items()}


def basic_auth_user(environ: dict) -> str | None:
    """The user name of a Basic ``Authorization`` header, as gunicorn's access line shows it."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    parts = header.split(" ", 1)
    if not header.lower().startswith("basic") or len(parts) != 2:
        return None
    try:
        return base64.b64decode(parts[1].strip().encode()).split(b":", 1)[0].decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def serve_api(settings: Settings, _args: argparse.Namespace) -> int:
    """Serve until stopped, the app's log lines in ``LOG_FORMAT`` (Granian keeps its own)."""
    configure_logging(settings)
    try:
        ApiServer(settings).serve()
    except OSError as error:  # the port taken, an address not ours
        print(f"\nError: {error}\n", file=sys.stderr, flush=True)
        return 1
    return 0
