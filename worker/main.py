"""`backprop worker`: a Celery worker process that trains jobs."""

import argparse
import logging

from service.broker import (
    broker_profile,
    create_celery_app,
    declare_task_queue,
    visibility_timeout_problem,
)
from service.db.session import make_session_factory
from service.settings import Settings
from worker.tasks import register_tasks

# Gossip, mingle and event heartbeats broadcast between workers; jobs need none of them.
WORKER_FLAGS = ["--without-gossip", "--without-mingle", "--without-heartbeat"]


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Consume training jobs until stopped; ``args.celery_args`` go to ``celery worker``."""
    app = create_celery_app(settings)
    problem = visibility_timeout_problem(settings)
    if problem:
        logging.getLogger(__name__).warning(problem)
    register_tasks(app, make_session_factory(settings.database_url), settings)
    if broker_profile(settings.broker_url).declare_before_consuming:
        # The consumer would die on the race; this declaration retries it.
        declare_task_queue(app, settings.broker_timeout_seconds)
    app.worker_main(
        ["worker", f"--loglevel={settings.log_level}", *WORKER_FLAGS, *args.celery_args]
    )
    return 0
