"""The one place the API talks to Celery: send a job by task name, and probe the broker.

The API never imports the training code; it sends ``worker.task_names.TRAIN_MODEL`` by name.
"""

from celery import Celery

from service.settings import Settings
from worker.celery_app import create_celery_app, declare_task_queue
from worker.task_names import TRAIN_MODEL

# Publishing while the broker is down must not hang a request: retry briefly, then give up.
PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}


class JobQueue:
    """Sends training jobs to the workers."""

    def __init__(self, celery: Celery, probe_timeout: float):
        self.celery = celery
        self.probe_timeout = probe_timeout
        self.declared = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "JobQueue":
        return cls(create_celery_app(settings), settings.broker_timeout_seconds)

    def enqueue_training(self, job_id: int) -> None:
        """Ask a worker to train job ``job_id``; call only after the job row is committed."""
        if not self.declared:
            self.queued_messages()
        self.celery.send_task(
            TRAIN_MODEL, args=[job_id], retry=True, retry_policy=PUBLISH_RETRY_POLICY
        )

    def queued_messages(self) -> int:
        """Declare the task queue and return how many messages wait in it (a broker round trip)."""
        waiting = declare_task_queue(self.celery, self.probe_timeout)
        self.declared = True
        return waiting
