"""The broker side, shared by the API, the dispatcher and the worker: the Celery app built from
Settings, what differs between brokers, the task names, and ``JobQueue``, which sends a job by
task name (the sender never imports the training code).

JSON only, late acks, one message prefetched per process, and a task whose worker process dies
is rejected back to the queue. Importing this module trains nothing, connects to nothing and
loads no Flask.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery
from sqlalchemy.exc import IntegrityError, OperationalError

from service.settings import Settings

# Task names: stable strings, sent by the API and the dispatcher, registered by the worker.
TRAIN_MODEL = "backprop.train_model"
DELIVER_WEBHOOK = "backprop.deliver_webhook"
RUN_OPERATION = "backprop.run_operation"
# Deliveries and operations have queues of their own, consumed by `backprop webhook-worker`
# only: on the training queue one would wait behind every job ahead of it (prefetch 1, jobs of
# hours), and an operation of minutes must not hold up a delivery.
WEBHOOK_QUEUE = "webhooks"
OPERATION_QUEUE = "operations"

DECLARE_ATTEMPTS = 3
# Publishing while the broker is down must not hang a request: retry briefly, then give up.
PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}


@dataclass(frozen=True)
class BrokerProfile:
    """What differs between brokers: transport options, whether broadcasts work, and whether
    processes starting at once race to create the queue (kombu's SQL transport does)."""

    transport_options: Callable[[Settings], dict[str, Any]]
    supports_broadcast: bool
    declare_before_consuming: bool = False
    # A transport class of ours (an import path), given with the URL's scheme prefix removed.
    transport: str | None = None

    def connection(self, broker_url: str) -> tuple[str, str | None]:
        """The URL and transport to hand Celery for ``broker_url``."""
        if self.transport is None:
            return broker_url, None
        return broker_url.split("+", 1)[1], self.transport


# kombu scans for messages past their visibility timeout every interval x throttle seconds
# (100 s by default); a short timeout is only useful with a scan at least as frequent.
MAX_RESTORE_INTERVAL_SECONDS = 10


def _redis_options(settings: Settings) -> dict[str, Any]:
    # A task not acknowledged within the visibility timeout is delivered again: keep it longer
    # than any job may run (the lease keeps a second delivery from training, but it wastes one).
    visibility_timeout = settings.job_visibility_timeout_seconds
    return {
        "visibility_timeout": visibility_timeout,
        "unacked_restore_interval": max(
            1, min(MAX_RESTORE_INTERVAL_SECONDS, visibility_timeout // 4)
        ),
        "unacked_restore_throttle": 1,
        "socket_connect_timeout": settings.broker_timeout_seconds,
    }


def visibility_timeout_problem(settings: Settings) -> str | None:
    """Why the broker's visibility timeout is too short for the longest allowed job, or None
    (also for brokers without one)."""
    options = broker_profile(settings.broker_url).transport_options(settings)
    timeout = options.get("visibility_timeout")
    if timeout is None or timeout > settings.max_job_seconds:
        return None
    return (
        f"JOB_VISIBILITY_TIMEOUT_SECONDS={timeout} is not above "
        f"MAX_JOB_SECONDS={settings.max_job_seconds}: Redis will deliver a job that runs longer "
        "again (its lease keeps it from training twice, but the delivery is wasted)"
    )


def _sqla_options(_settings: Settings) -> dict[str, Any]:
    # kombu hands these to sqlalchemy.create_engine: wait for SQLite's lock, never fail at once.
    return {"connect_args": {"timeout": 30}}


BROKER_PROFILES = {
    "redis": BrokerProfile(_redis_options, supports_broadcast=True),
    "rediss": BrokerProfile(_redis_options, supports_broadcast=True),
    "sqla": BrokerProfile(
        _sqla_options,
        supports_broadcast=False,
        declare_before_consuming=True,
        transport="service.embedded_broker:Transport",
    ),
}


def broker_profile(broker_url: str) -> BrokerProfile:
    """The profile of ``broker_url``'s scheme (``redis://``, ``sqla+sqlite:///``...)."""
    scheme = broker_url.split("://", 1)[0].split("+", 1)[0]
    try:
        return BROKER_PROFILES[scheme]
    except KeyError:
        valid = ", ".join(sorted(BROKER_PROFILES))
        raise ValueError(f"unsupported broker {scheme!r}; valid schemes: {valid}") from None


def create_celery_app(settings: Settings) -> Celery:
    """A Celery app for ``settings.broker_url`` with the service's delivery guarantees."""
    profile = broker_profile(settings.broker_url)
    options = profile.transport_options(settings)
    broker_url, transport = profile.connection(settings.broker_url)
    app = Celery("backprop", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_transport=transport,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        worker_enable_remote_control=profile.supports_broadcast,
        # Task events for Flower, where they can reach it: kombu's SQL transport keeps exchange
        # bindings in each process, so no other process would ever receive them.
        worker_send_task_events=profile.supports_broadcast,
        task_send_sent_event=profile.supports_broadcast,
        # Celery reads the visibility timeout from both; a result backend would fall back to
        # one hour without its own copy.
        broker_transport_options=options,
        result_backend_transport_options=options,
        broker_connection_timeout=settings.broker_timeout_seconds,
        # Reconnect after a broker restart, for as long as it takes.
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # A training task keeps running while the broker is away; if the message comes back,
        # the lease stops the copy.
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def declare_task_queue(app: Celery, timeout: float, queue: str | None = None) -> int:
    """Declare the task queue (``queue``, else the training queue) and return how many
    messages wait in it (a broker round trip).

    On kombu's SQL transport, processes that start at once race to create its tables and the
    queue's row ("table kombu_queue already exists", "UNIQUE constraint failed"); the loser's
    next attempt, on a new connection, finds them.
    """
    for _ in range(DECLARE_ATTEMPTS - 1):
        try:
            return _declare(app, timeout, queue)
        except (IntegrityError, OperationalError):
            continue
    return _declare(app, timeout, queue)


def _declare(app: Celery, timeout: float, queue: str | None) -> int:
    with app.connection_for_write() as connection:
        # One quick retry: a submission during a broker outage must not wait kombu's 2 s interval.
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        channel = connection.default_channel
        name = queue or app.conf.task_default_queue
        return channel.queue_declare(queue=name).message_count


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

    def enqueue_delivery(self, delivery_id: int) -> None:
        """Ask a webhook worker to attempt delivery ``delivery_id`` (committed, due)."""
        self._send(DELIVER_WEBHOOK, delivery_id, WEBHOOK_QUEUE)

    def enqueue_operation(self, operation_id: int) -> None:
        """Ask a webhook worker to run operation ``operation_id`` (committed)."""
        self._send(RUN_OPERATION, operation_id, OPERATION_QUEUE)

    def _send(self, task: str, row_id: int, queue: str) -> None:
        self.celery.send_task(
            task, args=[row_id], queue=queue, retry=True, retry_policy=PUBLISH_RETRY_POLICY
        )

    def queued_messages(self) -> int:
        """Declare the task queue and return how many messages wait in it (a broker round trip)."""
        waiting = declare_task_queue(self.celery, self.probe_timeout)
        self.declared = True
        return waiting
