"""Celery tasks: thin wrappers that take ids and call one function."""

from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy.orm import Session, sessionmaker

from service.broker import TRAIN_MODEL, JobQueue
from service.settings import Settings
from worker.training import arrays_cache, run_training


def register_tasks(app: Celery, sessions: sessionmaker[Session], settings: Settings) -> None:
    """Register the training task on ``app``; it opens sessions from ``sessions``."""
    cache = arrays_cache(settings.dataset_cache_bytes)
    # Publishes the sweep trials that a trial's end queues.
    queue = JobQueue(app, settings.broker_timeout_seconds)

    @app.task(name=TRAIN_MODEL)
    def train_model(job_id: int) -> None:
        run_training(sessions, job_id, settings, cache, queue)

    def forget_parent_connections(**_kwargs) -> None:
        # A forked pool process must not reuse the connections its parent opened.
        sessions.kw["bind"].dispose(close=False)

    worker_process_init.connect(forget_parent_connections, weak=False)
