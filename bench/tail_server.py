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
* ``gc``: every collection's generation and pause, wall and CPU (``gc.callbacks``);
* ``flushes``: each write of the prediction log's thread: rows, wall and CPU time.

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
        self.gc: list[tuple[int, float, float]] = []
        self.flushes: list[tuple[int, float, float]] = []

    def dump(self, folder: Path, number: int) -> None:
        path = folder / f"{os.getpid()}-{number}.json"
        path.write_text(json.dumps({"spans": self.spans, "gc": self.gc, "flushes": self.flushes}))
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
                (info["generation"], time.perf_counter() - wall, time.thread_time() - cpu)
            )

    return on_gc


def timed_flushes() -> None:
    """The prediction log's writes (its thread's ``flush``): rows, wall and CPU time."""
    flush = PredictionLog.flush

    def timed(self) -> int:
        wall, cpu = time.perf_counter(), time.thread_time()
        rows = flush(self)
        if rows:
            TRACE.flushes.append((rows, time.perf_counter() - wall, time.thread_time() - cpu))
        return rows

    PredictionLog.flush = timed


def switch_interval(seconds: float):
    return lambda: sys.setswitchinterval(seconds)


VARIANTS = {
    "shipped": lambda: None,
    # The server before its warm-up froze the start-up objects (service/api/server.py).
    "unfrozen": gc.unfreeze,
    "gc-off": gc.disable,  # an upper bound for what the collector costs, not a candidate
    "switch-1ms": switch_interval(0.001),
    "switch-0.5ms": switch_interval(0.0005),
    "switch-20ms": switch_interval(0.020),
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
        warm_up = start_warm_up(
            worker.wsgi, worker.app.readiness, worker.readiness_slot, freeze_long_lived_objects
        )
        worker.wsgi = timed_app(worker.wsgi)
        gc.callbacks.append(gc_recorder())
        timed_flushes()
        (self.folder / f"worker-{os.getpid()}").touch()  # whom bench/tail.py signals
        reports = iter(range(1_000_000))
        signal.signal(signal.SIGUSR2, lambda *_: TRACE.dump(self.folder, next(reports)))

        def apply_variant() -> None:
            warm_up.join()
            for change in self.variant.split("+"):  # "gc-freeze+switch-1ms": both
                VARIANTS[change]()

        threading.Thread(target=apply_variant, daemon=True).start()


def main() -> None:
    variant, folder = sys.argv[1], Path(sys.argv[2])
    settings = Settings.from_env()
    configure_logging(settings)
    TracedApp(settings, variant, folder).run()


if __name__ == "__main__":
    main()
