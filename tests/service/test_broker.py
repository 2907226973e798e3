"""The Celery app's delivery settings and the queue declaration both processes make."""

import gc
import multiprocessing
from queue import Empty

import pytest
from celery.worker import state as worker_state

import service.embedded_broker
from service.broker import (
    broker_profile,
    create_celery_app,
    declare_task_queue,
    visibility_timeout_problem,
)
from service.embedded_broker import IDLE_POLLING_SECONDS, POLLING_SECONDS
from service.settings import Settings
from worker.main import celery_argv, worker_flags


def test_json_only_late_acks_one_prefetched_and_requeued_on_worker_loss():
    conf = create_celery_app(Settings(broker_url="redis://127.0.0.1:6379/0")).conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 24 * 3600


def test_task_events_for_flower_go_out_only_where_another_process_can_receive_them():
    redis = create_celery_app(Settings(broker_url="redis://127.0.0.1:6379/0"))
    assert redis.conf.worker_send_task_events and redis.conf.task_send_sent_event
    assert "--without-heartbeat" not in worker_flags(redis)
    embedded = create_celery_app(Settings())
    assert not embedded.conf.worker_send_task_events and not embedded.conf.task_send_sent_event
    assert "--without-heartbeat" in worker_flags(embedded)


def test_the_visibility_timeout_is_the_same_wherever_celery_reads_it():
    settings = Settings(broker_url="redis://127.0.0.1:6379/0", job_visibility_timeout_seconds=8)
    conf = create_celery_app(settings).conf
    for options in (conf.broker_transport_options, conf.result_backend_transport_options):
        assert options["visibility_timeout"] == 8
    # kombu looks for expired messages every 2 s, not every 100 s (its default).
    assert conf.broker_transport_options["unacked_restore_interval"] == 2
    assert conf.broker_transport_options["unacked_restore_throttle"] == 1


def test_a_visibility_timeout_shorter_than_the_longest_job_is_reported():
    redis = "redis://127.0.0.1:6379/0"
    assert visibility_timeout_problem(Settings(broker_url=redis)) is None
    short = Settings(broker_url=redis, job_visibility_timeout_seconds=60, max_job_seconds=600)
    assert "JOB_VISIBILITY_TIMEOUT_SECONDS=60 is not above MAX_JOB_SECONDS=600" in (
        visibility_timeout_problem(short)
    )
    assert visibility_timeout_problem(Settings(max_job_seconds=10**9)) is None


def test_the_worker_reconnects_to_a_restarted_broker_and_keeps_its_running_task():
    conf = create_celery_app(Settings(broker_url="redis://127.0.0.1:6379/0")).conf
    assert conf.broker_connection_retry and conf.broker_connection_max_retries is None
    assert not conf.worker_cancel_long_running_tasks_on_connection_loss


def test_the_embedded_broker_gets_no_redis_options():
    conf = create_celery_app(Settings()).conf
    assert "visibility_timeout" not in conf.broker_transport_options
    assert not conf.worker_enable_remote_control


def test_an_unknown_broker_lists_the_valid_ones():
    with pytest.raises(ValueError, match="redis, rediss, sqla"):
        broker_profile("amqp://guest@localhost//")


def declare(url: str) -> int:
    return declare_task_queue(create_celery_app(Settings(broker_url=url)), 5.0)


def test_processes_declaring_a_new_sqlite_queue_at_once_all_succeed(tmp_path):
    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(declare, [url] * 4) == [0, 0, 0, 0]


def test_the_embedded_broker_backs_off_while_idle_and_polls_twenty_times_a_second_once_busy(
    tmp_path,
):
    app = create_celery_app(Settings(broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"))
    declare_task_queue(app, 5.0)
    with (
        app.connection_for_read() as connection,
        connection.SimpleQueue(app.conf.task_default_queue) as queue,
    ):
        transport = connection.transport
        assert transport.polling_interval == POLLING_SECONDS == 0.05
        with pytest.raises(Empty):
            queue.get(timeout=1.0)  # empty polls after 0.05, 0.1, 0.2, 0.25, 0.25 s...
        assert transport.polling_interval == IDLE_POLLING_SECONDS == 0.25
        app.send_task("backprop.example", args=[7])
        # The URL without its sqla+ prefix reaches SQLAlchemy: the message sent is there.
        message = queue.get(timeout=5)
        assert message.headers["task"] == "backprop.example"
        message.ack()
        assert transport.polling_interval == POLLING_SECONDS


def test_an_idle_worker_told_to_stop_polls_the_embedded_broker_no_more(tmp_path, monkeypatch):
    """Celery's loop reads its stop flag between two ``drain_events`` of 2 s: the transport's
    own loop must hand back at the first empty poll after a SIGTERM (a warm stop's flag is 0,
    which is not "no stop"), instead of sleeping on until the 2 s are out."""

    def poll_again(_seconds):
        raise AssertionError("the transport slept to poll again after the stop")

    app = create_celery_app(Settings(broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"))
    declare_task_queue(app, 5.0)
    with (
        app.connection_for_read() as connection,
        connection.SimpleQueue(app.conf.task_default_queue) as queue,
    ):
        monkeypatch.setattr(worker_state, "should_stop", 0)  # what SIGTERM's handler sets
        monkeypatch.setattr(service.embedded_broker, "sleep", poll_again)
        with pytest.raises(Empty):
            queue.get(timeout=30)


def test_the_worker_consumes_the_embedded_broker_through_its_own_transport(tmp_path):
    """Celery reads $BROKER_URL unless told --broker: its sqla+ prefix would pick kombu's
    transport, polled once a second."""
    settings = Settings(broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    app = create_celery_app(settings)
    argv = celery_argv(app, settings, ["--concurrency=1"])
    assert argv[:2] == [f"--broker=sqlite:///{tmp_path / 'broker.sqlite'}", "worker"]
    assert app.conf.broker_transport == "service.embedded_broker:Transport"
    assert argv[-1] == "--concurrency=1"


def test_a_closed_embedded_broker_connection_gives_its_database_connection_back(tmp_path):
    """kombu's SQL channel keeps one ORM session for its life and never closes it; a queue
    declared and counted leaves that session's transaction open. The dispatcher declares the
    queue on a new connection every round a job waits: with the sessions left to the garbage
    collector, its broker pool (5 + 10 overflow) ran out and publishing stopped for a minute."""
    app = create_celery_app(Settings(broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"))
    gc.disable()
    try:
        for _ in range(20):
            assert declare_task_queue(app, 5.0) == 0
        with app.connection_for_write() as connection:
            engine = connection.default_channel.session.get_bind()
            # This channel's own session holds no connection until it runs a statement.
            assert engine.pool.checkedout() == 0
    finally:
        gc.enable()
