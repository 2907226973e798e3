"""When an API server may take traffic (issue 27): ``/health/ready`` answers 200 only once every
process of the server has warmed its models, and 503 from the moment the server is told to stop.

Granian's main process forks the worker processes (service/api/server.py). ``ServerReadiness``
is anonymous shared memory that the main process maps before its first fork, so every worker
(and every worker forked later to replace a dead one) reads and writes the same bytes: one says
the server is draining, and one per worker slot says whether the process in it is warming up or
ready. Each worker has a slot, its index among the workers: the main process marks it warming
before each fork, the worker marks it ready once its warm-up thread is done, so a probe answered
by any worker speaks for all of them.
"""

import logging
import mmap
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
from flask import Flask
from sqlalchemy.orm import Session

from service.api.context import Services
from service.api.registry import load_outside_request
from service.db import registry
from service.db.tenancy import session_for
from service.model_refs import BadModelRef, parse_ref

logger = logging.getLogger(__name__)

WARMING, READY = 0, 1
DRAINING_BYTE = 0
# Between attempts to list the models while the database cannot be reached, doubled up to the
# largest.
RETRY_SECONDS, RETRY_MAX_SECONDS = 0.5, 10.0


class Readiness(Protocol):
    def problem(self) -> str | None:
        """Why the server should take no traffic now (warming up, draining), or None."""


class AlwaysReady:
    """An app outside ``backprop api`` (tests, in-process clients): nothing to wait for."""

    def problem(self) -> str | None:
        return None


class ServerReadiness:
    """The warm-up and drain state of one server of ``processes`` workers, in slots 1 to
    ``processes``."""

    def __init__(self, processes: int):
        self.processes = processes
        self._memory = mmap.mmap(-1, processes + 1)  # MAP_SHARED: forks share it; all zeros

    def mark_warming(self, slot: int) -> None:
        """In the main process, before the worker of ``slot`` is forked."""
        self._memory[slot] = WARMING

    def mark_ready(self, slot: int) -> None:
        self._memory[slot] = READY

    def start_draining(self) -> None:
        self._memory[DRAINING_BYTE] = 1

    def problem(self) -> str | None:
        if self._memory[DRAINING_BYTE]:
            return "draining: the server is stopping"
        ready = sum(self._memory[slot] == READY for slot in range(1, self.processes + 1))
        if ready < self.processes:
            return f"warming up: {ready} of {self.processes} processes have loaded their models"
        return None


def readiness_problem(app: Flask) -> str | None:
    return app.extensions["readiness"].problem()


def start_warm_up(
    app: Flask,
    readiness: ServerReadiness,
    slot: int,
    before_ready: Callable[[], None] = lambda: None,
) -> threading.Thread:
    """In a new worker process: warm up in a thread (the process answers /health/live
    meanwhile), call ``before_ready``, then mark ``slot`` ready."""

    def run() -> None:
        warm_up(app.extensions["backprop"])
        before_ready()
        readiness.mark_ready(slot)

    thread = threading.Thread(target=run, name="warm-up", daemon=True)
    thread.start()
    return thread


def warm_up(context: Services) -> list[int]:
    """Load the models to warm into this process's cache and run one forward pass on each;
    the ids of those warmed. A model that cannot be loaded or run is logged and skipped (it
    would fail its callers the same way); while the database cannot be reached, the listing is
    tried again."""
    warmed = []
    for tenant, model_id in models_to_warm_when_reachable(context):
        try:
            model = load_outside_request(context, tenant, model_id)
            model.forward(np.zeros((1, model.n_features)))
        except Exception:  # a model deleted meanwhile, a blob that does not load, a NaN...
            logger.exception("warm-up: model %s of tenant %s not warmed", model_id, tenant)
            continue
        warmed.append(model_id)
    logger.info("warm-up: %d models loaded and run: %s", len(warmed), warmed)
    return warmed


def models_to_warm_when_reachable(context: Services) -> list[tuple[str, int]]:
    pause = RETRY_SECONDS
    while True:
        try:
            return models_to_warm(context)
        except Exception as error:  # the database's driver raises its own types
            logger.warning("warm-up: cannot list the models (%s); again in %s s", error, pause)
            time.sleep(pause)
            pause = min(2 * pause, RETRY_MAX_SECONDS)


def models_to_warm(context: Services) -> list[tuple[str, int]]:
    """``(tenant, model id)`` of WARM_MODELS, or by default of the versions aliases serve;
    a name of WARM_MODELS that names no model is logged and left out."""
    settings = context.settings
    if settings.warm_models_max == 0:
        return []
    named = settings.warm_model_refs()
    if not named:
        with context.sessions() as session:  # no tenant: sees every tenant's aliases
            return registry.aliased_models(session, settings.warm_models_max)
    found = []
    for tenant, reference in named:
        with session_for(context.sessions, tenant) as session:
            model_id = named_model(session, reference)
        if model_id is None:
            logger.warning("WARM_MODELS: %s/%s names no model: not warmed", tenant, reference)
        else:
            found.append((tenant, model_id))
    return found


def named_model(session: Session, reference: str) -> int | None:
    """The id of the model ``reference`` names now in the session's tenant, or None."""
    try:
        row = registry.find_model(session, parse_ref(reference))
    except BadModelRef:
        return None
    return None if row is None else row.id
