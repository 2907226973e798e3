"""What a request can reach: the settings, a database session, the queue, the model cache and
what model references resolve to (with the registry generation that keeps that fresh)."""

from dataclasses import dataclass

from flask import current_app, g
from sqlalchemy.orm import Session, sessionmaker

from model_core import Model
from service.broker import JobQueue
from service.caching import GenerationalCache, LruCache
from service.db.tenancy import session_for
from service.generation import Generation
from service.serving.rollout import CountPublisher, ShadowRunner
from service.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    queue: JobQueue
    models: LruCache[int, Model]
    generation: Generation
    refs: GenerationalCache
    keys: GenerationalCache
    signing_secret: bytes
    rollout_counts: CountPublisher
    shadows: ShadowRunner


def services() -> Services:
    return current_app.extensions["backprop"]


def db() -> Session:
    """The request's database session, opened on first use and closed at teardown: under /v1
    and /v2 it sees only the caller's tenant's rows (``g.principal``, service/api/auth.py)."""
    if "db" not in g:
        principal = g.get("principal")
        sessions = services().sessions
        g.db = sessions() if principal is None else session_for(sessions, principal.tenant)
    return g.db


def current_generation() -> object:
    """The registry generation, read once per request (keys and model references share it)."""
    if "generation" not in g:
        g.generation = services().generation.current()
    return g.generation


def close_db(_error: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()
