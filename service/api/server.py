"""``backprop api``: the Flask app under gunicorn, one app per worker process."""

import argparse
import gc
import os
import queue
import select
import signal
import sys
import time

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import ThreadWorker
from prometheus_client import multiprocess

from service.api.app import create_app
from service.api.events import THREADS_PER_PROCESS
from service.api.readiness import ServerReadiness, start_warm_up
from service.logs import configure_logging
from service.metrics_files import VARIABLE as METRICS_FOLDER
from service.metrics_files import remove_metrics_folder
from service.settings import Settings

# Parsing a data set upload near MAX_REQUEST_BYTES takes longer than gunicorn's default 30 s.
REQUEST_TIMEOUT_SECONDS = 300


class ThreadWorkerLeavingInterruptsToTheArbiter(ThreadWorker):
    """gunicorn's gthread worker, made to stop every time it is told to.

    * SIGQUIT, the arbiter's quick stop, exits at once. gunicorn's handler first shuts the
      thread pool down, taking the pool's lock from inside the signal handler: when the signal
      lands while the main thread holds that lock (submitting a request to the pool), or
      re-enters the handler, the worker deadlocks and lives on.
    * SIGINT is ignored: a Ctrl-C reaches the whole process group, and the arbiter answers it
      with a SIGQUIT to each worker, so only the arbiter decides.
    * Until a new worker installs its handlers it runs the arbiter's, which only queue a signal
      in this process's copy of the arbiter's queue: a stop sent while a worker boots would be
      lost, leaving it serving until the arbiter's graceful timeout (30 s) killed it. It is
      sent again once the handlers are in place.
    """

    arbiter_signals: queue.SimpleQueue | None = None

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.resend_stop_signals_queued_since_fork()

    def handle_quit(self, _signal_number, _frame) -> None:
        self.alive = False
        self.cfg.worker_int(self)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    def handle(self, conn):
        """gunicorn's ``handle``, then, while the connection is kept alive and its next request
        comes within ``NEXT_REQUEST_WAIT_MS``, that request too, in the same thread."""
        keepalive = super().handle(conn)
        while keepalive is True and self.alive and next_request_arrives(conn):
            keepalive = super().handle(conn)
        return keepalive

    def resend_stop_signals_queued_since_fork(self) -> None:
        queued = set()
        while self.arbiter_signals is not None and not self.arbiter_signals.empty():
            queued.add(self.arbiter_signals.get_nowait())
        for received, resent in STOP_SIGNALS.items():
            if received in queued:
                os.kill(os.getpid(), resent)
                return


# How long a thread that answered a request on a kept-alive connection waits for the next one
# before handing the connection back to the worker's poller.
NEXT_REQUEST_WAIT_MS = 2


def next_request_arrives(conn) -> bool:
    """Whether the connection's next request is read ahead or arrives (or the client closes)
    within ``NEXT_REQUEST_WAIT_MS``.

    gthread hands every kept-alive connection back to its main thread's poller after each
    answer, and the poller hands it to a pool thread again when the next request comes: two
    hand-offs between threads per request, each a wake-up and a turn of the GIL. A client that
    sends its next request as soon as it has the answer (wrk, an app's connection pool under
    load) has it read by the same thread at once instead."""
    if conn.parser.unreader.buf.getvalue():
        return True
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(NEXT_REQUEST_WAIT_MS))


# A stop signal the arbiter's handler queued in a new worker, and the one the worker answers to.
STOP_SIGNALS = {
    signal.SIGQUIT: signal.SIGQUIT,
    signal.SIGINT: signal.SIGQUIT,
    signal.SIGTERM: signal.SIGTERM,
}


def hand_over_arbiter_signals(arbiter, worker) -> None:
    """``post_fork``, in the new worker: its copy of the arbiter's signal queue."""
    worker.arbiter_signals = arbiter.SIG_QUEUE


def claim_readiness_slot(arbiter, worker) -> None:
    """``pre_fork``, in the arbiter: the slot in which the new worker reports its warm-up."""
    worker.readiness_slot = arbiter.app.readiness.claim_slot()


def warm_up_in_background(worker) -> None:
    """``post_worker_init``, in the worker once its app is loaded: warm up in a thread, freeze
    what the process has built, then report ready (service/api/readiness.py)."""
    start_warm_up(
        worker.wsgi, worker.app.readiness, worker.readiness_slot, freeze_long_lived_objects
    )


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


def forget_dead_worker(arbiter, worker) -> None:
    """``child_exit``, in the arbiter: the worker's readiness slot is freed for the next one,
    and prometheus_client drops the live gauges of the process; its counters stay, summed into
    the totals (prometheus_client's recipe for gunicorn)."""
    arbiter.app.readiness.free_slot(worker.readiness_slot)
    if os.environ.get(METRICS_FOLDER) is not None:
        multiprocess.mark_process_dead(worker.pid)


# gunicorn's default access line (Apache's combined log format), the one the API writes.
COMBINED_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


class CombinedLogFormatLogger(Logger):
    """gunicorn's logger, building only the nine values the combined log format names for each
    access line: gunicorn's ``atoms`` builds every value a format could name, one per request
    header, response header and environ variable among them (54 for a prediction), each then
    copied and escaped by ``SafeAtoms``: about 40% of the access line's time
    (docs/benchmarks.md). The line is the same; any other ``access_log_format`` gets gunicorn's
    atoms."""

    def atoms(self, resp, req, environ, request_time) -> dict:
        if self.cfg.access_log_format != COMBINED_LOG_FORMAT:
            return super().atoms(resp, req, environ, request_time)
        status = resp.status
        sent = getattr(resp, "sent", None)
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "l": "-",
            "u": self._get_user(environ) or "-",
            "t": self.now(),
            "r": f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}",
            "s": status.split(None, 1)[0] if isinstance(status, str) else status,
            "b": "-" if sent is None else str(sent),
            "f": environ.get("HTTP_REFERER", "-"),
            "a": environ.get("HTTP_USER_AGENT", "-"),
        }


class DrainingArbiter(Arbiter):
    """gunicorn's arbiter, which on SIGTERM first drains for DRAIN_SECONDS: every worker
    answers 503 on /health/ready and keeps serving, so that a load balancer takes the server
    out of rotation before it stops taking connections; then gunicorn's graceful stop (the
    listeners closed, in-flight requests finished, at most ``graceful_timeout``). A second
    SIGTERM stops at once; SIGINT and SIGQUIT stop quickly, as ever."""

    drain_until: float | None = None

    def handle_term(self) -> None:
        seconds = self.app.settings.drain_seconds
        if self.drain_until is not None or seconds == 0:
            raise StopIteration
        self.app.readiness.start_draining()
        self.drain_until = time.monotonic() + seconds
        self.log.info("Draining for %s s: /health/ready answers 503, requests are served", seconds)

    def wait_for_signals(self, timeout: float = 1.0) -> list:
        if self.drain_until is not None:
            timeout = max(0.0, min(timeout, self.drain_until - time.monotonic()))
        return super().wait_for_signals(timeout)

    def manage_workers(self) -> None:
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            raise StopIteration  # the main loop's graceful stop
        super().manage_workers()


class GunicornApp(BaseApplication):
    """Gunicorn serving ``create_app(settings)``, one app per worker process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        # Mapped here, in the arbiter, so that every worker forked later shares it.
        self.readiness = ServerReadiness(settings.web_concurrency)
        super().__init__()

    def load_config(self) -> None:
        """Threaded workers: an event stream holds a thread for minutes, not a whole process
        (and the worker's liveness ``timeout`` does not cut long streams short); only the
        arbiter hears a terminal's Ctrl-C; no control socket."""
        self.cfg.set("bind", f"{self.settings.host}:{self.settings.port}")
        self.cfg.set("workers", self.settings.web_concurrency)
        self.cfg.set("worker_class", ThreadWorkerLeavingInterruptsToTheArbiter)
        self.cfg.set("pre_fork", claim_readiness_slot)
        self.cfg.set("post_fork", hand_over_arbiter_signals)
        self.cfg.set("post_worker_init", warm_up_in_background)
        self.cfg.set("child_exit", forget_dead_worker)
        self.cfg.set("on_exit", lambda _arbiter: remove_metrics_folder())
        self.cfg.set("threads", THREADS_PER_PROCESS)
        self.cfg.set("timeout", REQUEST_TIMEOUT_SECONDS)
        access_log = self.settings.access_log
        self.cfg.set("accesslog", None if access_log == "off" else access_log)
        self.cfg.set("logger_class", CombinedLogFormatLogger)
        self.cfg.set("loglevel", self.settings.log_level.lower())
        # gunicorn's control socket (for gunicornc) sits at one path per user: a second API on
        # the host would take it over, and stopping either would remove the other's.
        self.cfg.set("control_socket_disable", True)

    def load(self):
        return create_app(self.settings, self.readiness)

    def run(self) -> None:
        """``BaseApplication.run`` with the draining arbiter."""
        try:
            DrainingArbiter(self).run()
        except RuntimeError as error:
            print(f"\nError: {error}\n", file=sys.stderr, flush=True)
            sys.exit(1)


def serve_api(settings: Settings, _args: argparse.Namespace) -> int:
    """Serve until stopped, the app's log lines in ``LOG_FORMAT`` (gunicorn keeps its own)."""
    configure_logging(settings)
    GunicornApp(settings).run()
    return 0
