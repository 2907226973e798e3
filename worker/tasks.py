"""Celery tasks: thin wrappers that take ids and call one function."""

from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy.orm import Session, sessionmaker

from service.broker import DELIVER_WEBHOOK, RUN_OPERATION, TRAIN_MODEL, JobQueue
from service.generation import generation_for
from service.settings import Settings
from service.webhooks.sending import Sender
from worker.operations import run_operation
from worker.training import arrays_cache, run_training


def register_tasks(app: Celery, sessions: sessionmaker[Session], settings: Settings) -> None:
    """Register the training task on ``app``; it opens sessions from ``sessions``."""
    cache = arrays_cache(settings.dataset_cache_bytes)
    # Publishes the sweep trials that a trial's end queues.
    queue = JobQueue(app, settings.broker_timeout_seconds)

    @app.task(name=TRAIN_MODEL)
    def train_model(job_id: int) -> None:
        run_training(sessions, job_id, settings, cache, queue)

    forget_parent_connections(sessions)


def register_webhook_task(app: Celery, sessions: sessionmaker[Session], settings: Settings) -> None:
    """Register the delivery and operation tasks on ``app`` (`backprop webhook-worker`)."""
    sender = Sender.from_settings(settings, sessions)
    generation = generation_for(settings)

    @app.task(name=DELIVER_WEBHOOK)
    def deliver_webhook(delivery_id: int) -> None:
        sender.attempt(delivery_id)

    @app.task(name=RUN_OPERATION)
    def run_operation_task(operation_id: int) -> None:
        run_operation(sessions, operation_id, settings, generation)

    forget_parent_connections(sessions)


def forget_parent_connections(sessions: sessionmaker[Session]) -> None:
    """A forked pool process must not reuse the connections its parent opened."""

    def forget(**_kwargs) -> None:
        sessions.kw["bind"].dispose(close=False)

    worker_process_init.connect(forget, weak=False)
