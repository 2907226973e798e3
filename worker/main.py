"""`backprop worker`: a Celery worker process that trains jobs; `backprop webhook-worker`: one
that sends webhook deliveries and runs operations (a large promotion gate or importance), from
queues of their own (service/broker.py)."""

import argparse
import logging

from celery import Celery
from celery.signals import setup_logging

from service.broker import (
    OPERATION_QUEUE,
    WEBHOOK_QUEUE,
    broker_profile,
    create_celery_app,
    declare_task_queue,
    visibility_timeout_problem,
)
from service.db.session import make_session_factory
from service.logs import configure_logging
from service.settings import Settings
from worker.tasks import register_tasks, register_webhook_task

# Gossip and mingle broadcast between workers; jobs need neither. Event heartbeats tell Flower
# that a worker is alive: sent only on brokers that carry events (service/broker.py).
WORKER_FLAGS = ["--without-gossip", "--without-mingle"]
NO_EVENTS_FLAGS = ["--without-heartbeat"]


def worker_flags(app: Celery) -> list[str]:
    if app.conf.worker_send_task_events:
        return WORKER_FLAGS
    return WORKER_FLAGS + NO_EVENTS_FLAGS


def log_like_the_service(settings: Settings) -> None:
    """Celery's own log set-up gives way to any receiver of ``setup_logging``: the worker's
    lines (Celery's too) come out in ``LOG_FORMAT``, with the request id of the job trained."""

    def configure(**_kwargs) -> None:
        configure_logging(settings)

    setup_logging.connect(configure, weak=False)


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Consume training jobs until stopped; ``args.celery_args`` go to ``celery worker``."""
    log_like_the_service(settings)
    app = create_celery_app(settings)
    problem = visibility_timeout_problem(settings)
    if problem:
        logging.getLogger(__name__).warning(problem)
    # Every database call of an attempt retries transient errors (worker/retries.py, the
    # recorder, the heartbeat): a connection left stale by a restart costs one, so no ping.
    sessions = make_session_factory(settings.database_url, pre_ping=False)
    register_tasks(app, sessions, settings)
    if broker_profile(settings.broker_url).declare_before_consuming:
        # The consumer would die on the race; this declaration retries it.
        declare_task_queue(app, settings.broker_timeout_seconds)
    app.worker_main(celery_argv(app, settings, args.celery_args))
    return 0


def celery_argv(app: Celery, settings: Settings, celery_args: list[str]) -> list[str]:
    """``celery worker``'s command line. Its ``--broker`` is the app's own URL: left out, Celery
    would read $BROKER_URL, whose ``sqla+`` prefix overrides the embedded broker's transport
    class (service/embedded_broker.py)."""
    return [
        f"--broker={app.conf.broker_url}",
        "worker",
        f"--loglevel={settings.log_level}",
        *worker_flags(app),
        *celery_args,
    ]


def run_webhook_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Send webhook deliveries and run operations until stopped, WEBHOOK_CONCURRENCY at once
    (each in a process of its own: a killed one loses only its attempt, which the dispatcher
    sends again); ``args.celery_args`` go to ``celery worker``."""
    log_like_the_service(settings)
    app = create_celery_app(settings)
    register_webhook_task(app, make_session_factory(settings.database_url), settings)
    if broker_profile(settings.broker_url).declare_before_consuming:
        for queue in (WEBHOOK_QUEUE, OPERATION_QUEUE):
            declare_task_queue(app, settings.broker_timeout_seconds, queue)
    queues = f"--queues={WEBHOOK_QUEUE},{OPERATION_QUEUE}"
    queue_args = [queues, f"--concurrency={settings.webhook_concurrency}"]
    app.worker_main(celery_argv(app, settings, [*queue_args, *args.celery_args]))
    return 0
