"""``backprop api``'s gunicorn, instrumented from inside each worker (bench/tail.py): where a
request's time goes at 16 connections, measured in the process rather than guessed from wrk.

    python -m bench.tail_server VARIANT TRACE_FOLDER     # the settings from the environment

Each worker records, with ``time.perf_counter``:

* ``app``: each call of the Flask app (the hooks, the view, the answer's body);
* ``to_thread``: from the poller handing a readable connection to the thread pool
  (``enqueue_req``, main thread) to a pool thread starting on it (``handle``);
* ``to_poller``: from a pool thread finishing a request to the main thread putting the
  connection back on the poller (``finish_request``, sent through gunicorn's wake-up pipe);
* ``handle``: the pool thread's whole request (parse, app, write), and ``handle_cpu``, the CPU
  time that thread spent on it (``time.thread_time``: the request's own work, without its waits
  for the GIL or a core);
* ``requests``: each ``handle``'s start and end (``perf_counter``, the system's monotonic
  clock, as every start below), to tell which requests a pause or a write overlapped;
* ``gc``: every collection's generation, start, wall and CPU time (``gc.callbacks``);
* ``flushes``: each write of the prediction log's thread: rows, start, wall and CPU time.

SIGUSR2 makes a worker write what it recorded since the last one to
``TRACE_FOLDER/<pid>-<n>.json`` and start again. ``VARIANT`` (``VARIANTS``) is applied once the
worker's warm-up has finished (``a+b``: both); ``shipped`` is the server as ``backprop api``
runs it, ``unfrozen`` as it ran before its warm-up froze the start-up objects.
"""

import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from service.api.readiness import start_warm_up
from service.api.server import (
    GunicornApp,
    ThreadWorkerLeavingInterruptsToTheArbiter,
    freeze_long_lived_objects,
)
from service.logs import configure_logging
from service.serving.prediction_log import PredictionLog
from service.settings import Settings


class Trace:
    """What one worker measured since its last report: lists of seconds (appends are atomic
    under the GIL, so the threads share them without a lock)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.spans: dict[str, list[float]] = {
            "app": [],
            "to_thread": [],
            "to_poller": [],
            "handle": [],
            "handle_cpu": [],
        }
        self.requests: list[tuple[float, float]] = []  # each handle's start and end
        self.gc: list[tuple[int, float, float, float]] = []
        self.flushes: list[tuple[int, float, float, float]] = []

    def dump(self, folder: Path, number: int) -> None:
        path = folder / f"{os.getpid()}-{number}.json"
        path.write_text(
            json.dumps(
                {
                    "spans": self.spans,
                    "requests": self.requests,
                    "gc": self.gc,
                    "flushes": self.flushes,
                }
            )
        )
        self.reset()


TRACE = Trace()


class TracedWorker(ThreadWorkerLeavingInterruptsToTheArbiter):
    """The gthread worker of ``backprop api`` with its two hand-offs timed."""

    def enqueue_req(self, conn) -> None:
        conn.enqueued_at = time.perf_counter()
        super().enqueue_req(conn)

    def handle(self, conn):
        started, cpu = time.perf_counter(), time.thread_time()
        TRACE.spans["to_thread"].append(started - conn.enqueued_at)
        try:
            return super().handle(conn)
        finally:
            conn.handled_at = time.perf_counter()
            TRACE.spans["handle"].append(conn.handled_at - started)
            TRACE.spans["handle_cpu"].append(time.thread_time() - cpu)
            TRACE.requests.append((started, conn.handled_at))

    def finish_request(self, conn, fs) -> None:
        handled_at = getattr(conn, "handled_at", None)
        if handled_at is not None:
            TRACE.spans["to_poller"].append(time.perf_counter() - handled_at)
        super().finish_request(conn, fs)


def timed_app(app):
    def wsgi(environ, start_response):
        started = time.perf_counter()
        try:
            return app(environ, start_response)
        finally:
            TRACE.spans["app"].append(time.perf_counter() - started)

    return wsgi


def gc_recorder():
    """Each collection's generation, wall time and CPU time (the collector runs in the thread
    that triggered it, holding the GIL: its CPU time is the pause without the machine's load)."""
    started = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started.append((time.perf_counter(), time.thread_time()))
        elif started:
            wall, cpu = started.pop()
            TRACE.gc.append(
                (info["generation"], wall, time.perf_counter() - wall, time.thread_time() - cpu)
            )

    return on_gc


def timed_flushes() -> None:
    """The prediction log's writes (its thread's ``flush``): rows, wall and CPU time."""
    flush = PredictionLog.flush

    def timed(self) -> int:
        wall, cpu = time.perf_counter(), time.thread_time()
        rows = flush(self)
        if rows:
            TRACE.flushes.append((rows, wall, time.perf_counter() - wall, time.thread_time() - cpu))
        return rows

    PredictionLog.flush = timed


def switch_interval(seconds: float):
    return lambda: sys.setswitchinterval(seconds)


def flush_with_short_switches() -> None:
    """Each prediction-log write run with a 0.5 ms switch interval (the process's, restored
    after it): a request thread waiting for the GIL gets it from the writer sooner."""
    flush = PredictionLog.flush

    def flush_switching_often(self) -> int:
        interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        try:
            return flush(self)
        finally:
            sys.setswitchinterval(interval)

    PredictionLog.flush = flush_switching_often


VARIANTS = {
    "shipped": lambda: None,
    # The server as it was before its warm-up froze the start-up objects (service/api/server.py):
    # no freeze, and none of its collection (``gc.unfreeze`` afterwards would not do: the
    # collection before the freeze moves the next full collection's trigger far off).
    "unfrozen": lambda: None,
    "gc-off": gc.disable,  # an upper bound for what the collector costs, not a candidate
    "switch-1ms": switch_interval(0.001),
    "switch-0.5ms": switch_interval(0.0005),
    "switch-20ms": switch_interval(0.020),
    "flush-switch-0.5ms": flush_with_short_switches,
}


class TracedApp(GunicornApp):
    def __init__(self, settings: Settings, variant: str, folder: Path):
        self.variant = variant
        self.folder = folder
        super().__init__(settings)

    def load_config(self) -> None:
        super().load_config()
        self.cfg.set("worker_class", TracedWorker)
        self.cfg.set("post_worker_init", self.post_worker_init)

    def post_worker_init(self, worker) -> None:
        changes = self.variant.split("+")  # "unfrozen+switch-1ms": both
        before_ready = (lambda: None) if "unfrozen" in changes else freeze_long_lived_objects
        warm_up = start_warm_up(
            worker.wsgi, worker.app.readiness, worker.readiness_slot, before_ready
        )
        worker.wsgi = timed_app(worker.wsgi)
        gc.callbacks.append(gc_recorder())
        timed_flushes()
        (self.folder / f"worker-{os.getpid()}").touch()  # whom bench/tail.py signals
        reports = iter(range(1_000_000))
        signal.signal(signal.SIGUSR2, lambda *_: TRACE.dump(self.folder, next(reports)))

        def apply_variant() -> None:
            warm_up.join()
            for change in changes:
                VARIANTS[change]()

        threading.Thread(target=apply_variant, daemon=True).start()


def main() -> None:
    variant, folder = sys.argv[1], Path(sys.argv[2])
    settings = Settings.from_env()
    configure_logging(settings)
    TracedApp(settings, variant, folder).run()


if __name__ == "__main__":
    main()
