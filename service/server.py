"""``backprop api``: the Flask app under gunicorn, one app per worker process."""

import argparse
import signal

from gunicorn.app.base import BaseApplication

from service.app import create_app
from service.events import THREADS_PER_PROCESS
from service.settings import Settings

# Parsing a data set upload near MAX_REQUEST_BYTES takes longer than gunicorn's default 30 s.
REQUEST_TIMEOUT_SECONDS = 300


def leave_interrupts_to_the_arbiter(_worker) -> None:
    """Ignore SIGINT in a gunicorn worker: a Ctrl-C reaches the whole process group, and the
    arbiter answers it with a SIGQUIT to each worker. A gthread worker given both re-enters its
    quit handler and deadlocks on its thread pool's shutdown lock (gunicorn 27), living on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class GunicornApp(BaseApplication):
    """Gunicorn serving ``create_app(settings)``, one app per worker process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        """Threaded workers: an event stream holds a thread for minutes, not a whole process
        (and the worker's liveness ``timeout`` does not cut long streams short); only the
        arbiter hears a terminal's Ctrl-C; no control socket."""
        self.cfg.set("bind", f"{self.settings.host}:{self.settings.port}")
        self.cfg.set("workers", self.settings.web_concurrency)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", THREADS_PER_PROCESS)
        self.cfg.set("timeout", REQUEST_TIMEOUT_SECONDS)
        self.cfg.set("accesslog", "-")
        self.cfg.set("loglevel", self.settings.log_level.lower())
        self.cfg.set("post_worker_init", leave_interrupts_to_the_arbiter)
        # gunicorn's control socket (for gunicornc) sits at one path per user: a second API on
        # the host would take it over, and stopping either would remove the other's.
        self.cfg.set("control_socket_disable", True)

    def load(self):
        return create_app(self.settings)


def serve_api(settings: Settings, _args: argparse.Namespace) -> int:
    GunicornApp(settings).run()
    return 0
