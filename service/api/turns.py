"""Small predictions take turns: at most ``PREDICT_CONCURRENCY`` of them run at once in an API
process, the others wait in the order they came.

A Granian worker runs each request on a thread of its own, and CPython runs Python on one thread
at a time. Sixteen small predictions at once in two processes are eight threads per process
passing the GIL among them: each release (a write, a socket, a product in BLAS) hands it to
whichever thread the kernel wakes, so a request can wait through others' turns again and again.
Two at a time, first come first served, keep the GIL between two threads and serve the rest in
order: at 16 connections the p99 fell by a third at the same throughput (docs/benchmarks.md).

Only small predictions take turns (``POST`` to a ``/v1`` predict or a ``/v2`` infer with a body
of at most ``SMALL_BODY_BYTES``). A large one (a 10,000-row binary infer) spends its time in BLAS
without the GIL and goes straight on, so that small ones never wait behind it; so does every
other request (event streams hold their thread for their whole life).
"""

import collections
import threading
from collections.abc import Callable, Iterable

SMALL_BODY_BYTES = 64 * 1024
PREDICTION_PREFIXES = ("/v1/models/", "/v2/models/")
PREDICTION_SUFFIXES = ("/predict", "/infer")


class Turns:
    """At most ``size`` holders at once (``with turns:``); the others wait, first come first
    served. A holder that leaves hands its place to the longest waiter."""

    def __init__(self, size: int):
        self.free = size
        self.waiting: collections.deque[threading.Lock] = collections.deque()
        self.lock = threading.Lock()

    def __enter__(self) -> "Turns":
        with self.lock:
            if self.free and not self.waiting:
                self.free -= 1
                return self
            place = threading.Lock()
            place.acquire()
            self.waiting.append(place)
        place.acquire()  # released by the holder that hands its place over
        return self

    def __exit__(self, *_exc) -> None:
        with self.lock:
            if self.waiting:
                self.waiting.popleft().release()
            else:
                self.free += 1


def takes_a_turn(environ: dict) -> bool:
    """A prediction whose body says its length, at most ``SMALL_BODY_BYTES``."""
    path = environ.get("PATH_INFO", "")
    length = environ.get("CONTENT_LENGTH", "")
    return (
        environ.get("REQUEST_METHOD") == "POST"
        and path.startswith(PREDICTION_PREFIXES)
        and path.endswith(PREDICTION_SUFFIXES)
        and length.isdigit()
        and int(length) <= SMALL_BODY_BYTES
    )


class PredictionTurns:
    """WSGI middleware: each small prediction runs ``app`` in a turn, its answer read and its
    body closed (the access line and the response's close hooks) before the turn ends, so that
    a turn never depends on the server coming back to close a body."""

    def __init__(self, app: Callable, size: int):
        self.app = app
        self.turns = Turns(size)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not takes_a_turn(environ):
            return self.app(environ, start_response)
        with self.turns:
            body = self.app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                if hasattr(body, "close"):
                    body.close()
