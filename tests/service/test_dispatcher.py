"""The dispatcher on a real SQLite database with a stand-in broker: what it sends, when it
sends again, and what a broker outage leaves behind."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from service.db import attempts, operations, webhooks
from service.db.models import TrainingJob, WebhookDelivery, utcnow
from service.dispatcher import Dispatcher
from service.vocabulary import JobStatus, OperationKind
from tests.factories import queued_xor_job


class FakeQueue:
    """Records what is published; ``waiting`` is what the broker's queue holds."""

    def __init__(self, waiting: int = 0, down: bool = False):
        self.sent: list[int] = []
        self.deliveries: list[int] = []
        self.operations: list[int] = []
        self.waiting = waiting
        self.down = down

    def enqueue_training(self, job_id: int) -> None:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.sent.append(job_id)

    def enqueue_delivery(self, delivery_id: int) -> None:
        self.deliveries.append(delivery_id)

    def enqueue_operation(self, operation_id: int) -> None:
        self.operations.append(operation_id)

    def queued_messages(self) -> int:
        return self.waiting


def dispatcher(sessions, queue: FakeQueue) -> Dispatcher:
    return Dispatcher(sessions, queue, max_attempts=3, interval=0.01, redispatch_after=10)


def dispatched_at(sessions, job_id: int):
    with sessions() as session:
        return session.get(TrainingJob, job_id).dispatched_at


def sent_ago(sessions, job_id: int, seconds: float) -> None:
    with sessions() as session:
        session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id)
            .values(dispatched_at=utcnow() - timedelta(seconds=seconds))
        )
        session.commit()


def test_queued_jobs_never_sent_are_sent_once_and_marked(sessions):
    first, second = queued_xor_job(sessions), queued_xor_job(sessions)
    queue = FakeQueue(waiting=2)
    assert dispatcher(sessions, queue).run_once() == 2
    assert dispatcher(sessions, queue).run_once() == 0
    assert queue.sent == [first, second]
    assert dispatched_at(sessions, first) is not None


def test_a_job_whose_message_was_lost_is_sent_again_once_the_queue_is_empty(sessions):
    job_id = queued_xor_job(sessions)
    sent_ago(sessions, job_id, 60)
    waiting = FakeQueue(waiting=1)
    assert dispatcher(sessions, waiting).run_once() == 0
    empty = FakeQueue(waiting=0)
    assert dispatcher(sessions, empty).run_once() == 1
    assert empty.sent == [job_id]
    sent_ago(sessions, job_id, 1)
    assert dispatcher(sessions, FakeQueue(waiting=0)).run_once() == 0


def test_a_broker_outage_leaves_the_job_to_send_on_the_next_round(sessions):
    job_id = queued_xor_job(sessions)
    with pytest.raises(ConnectionError):
        dispatcher(sessions, FakeQueue(down=True)).run_once()
    assert dispatched_at(sessions, job_id) is None
    queue = FakeQueue()
    assert dispatcher(sessions, queue).run_once() == 1 and queue.sent == [job_id]


def test_a_job_whose_worker_died_is_requeued_and_sent_again(sessions):
    job_id = queued_xor_job(sessions)
    with sessions() as session:
        attempts.claim_job(session, job_id, "dead worker", lease_seconds=-1, max_attempts=3)
    queue = FakeQueue()
    assert dispatcher(sessions, queue).run_once() == 1
    with sessions() as session:
        job = session.get(TrainingJob, job_id)
        assert (job.status, job.attempt, job.lease_owner) == (JobStatus.QUEUED, 1, None)
    assert queue.sent == [job_id]


def test_the_loop_survives_an_outage_and_stops_when_asked(sessions):
    queued_xor_job(sessions)
    queue = FakeQueue(down=True)
    loop = dispatcher(sessions, queue)
    rounds = []
    real_run_once = loop.run_once

    def count_then_run():
        rounds.append(1)
        if len(rounds) == 3:
            queue.down = False
        if len(rounds) == 4:
            loop.stop()
        return real_run_once()

    loop.run_once = count_then_run
    loop.run_forever()
    assert len(rounds) == 4 and len(queue.sent) == 1


def test_a_job_the_reaper_ends_gets_its_job_finished_event(sessions):
    with sessions() as session:
        webhooks.create_webhook(session, "http://127.0.0.1:9/", ["job.finished"], "sealed")
    job_id = queued_xor_job(sessions)
    with sessions() as session:
        session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id)
            .values(
                status=JobStatus.RUNNING,
                attempt=3,
                lease_expires_at=utcnow() - timedelta(seconds=1),
            )
        )
        session.commit()
    dispatcher(sessions, FakeQueue()).reap()
    with sessions() as session:
        [delivery] = session.scalars(select(WebhookDelivery))
    data = json.loads(delivery.body)["data"]
    assert (data["job_id"], data["status"]) == (job_id, "failed")
    assert data["error"].startswith("the worker training this job died on every attempt")


def test_a_due_delivery_is_published_once_and_again_only_when_its_message_or_worker_is_lost(
    sessions,
):
    queue = FakeQueue()
    send = Dispatcher(sessions, queue, max_attempts=3, interval=0.01, webhook_lease=15)
    with sessions() as session:
        webhooks.create_webhook(session, "http://127.0.0.1:9/", ["alias.moved"], "sealed")
        [delivery] = webhooks.record_event(session, "default", "alias.moved", {"name": "xor"})
        session.commit()
    assert send.dispatch_deliveries() == 1 and queue.deliveries == [delivery.id]
    assert send.dispatch_deliveries() == 0
    with sessions() as session:
        claim = webhooks.claim_delivery(session, delivery.id, "worker:1", lease_seconds=15)
    assert claim.number == 1
    published_long_ago = {"dispatched_at": utcnow() - timedelta(seconds=60)}
    move_delivery(sessions, delivery.id, **published_long_ago)
    assert send.dispatch_deliveries() == 0  # its worker's lease still runs
    move_delivery(sessions, delivery.id, claimed_until=utcnow() - timedelta(seconds=1))
    assert send.dispatch_deliveries() == 1 and queue.deliveries == [delivery.id] * 2


def move_delivery(sessions, delivery_id: int, **values) -> None:
    with sessions() as session:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values)
        )
        session.commit()


def test_operations_are_sent_to_their_queue_once_and_again_when_their_worker_died(sessions):
    with sessions() as session:
        operation_id = operations.create_operation(
            session, OperationKind.IMPORTANCE, {"model_id": 1, "body": {}}
        ).id
    queue = FakeQueue()
    dispatcher(sessions, queue).run_once()
    dispatcher(sessions, queue).run_once()
    assert queue.operations == [operation_id]
    with sessions() as session:
        operations.claim_operation(session, operation_id, lease_seconds=-1, max_attempts=3)
    lost = Dispatcher(
        sessions, queue, max_attempts=3, interval=0.01, redispatch_after=10, operation_lease=-1
    )
    lost.run_once()
    assert queue.operations == [operation_id, operation_id]
