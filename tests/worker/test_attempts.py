"""Attempts of a job on a real SQLite database: leases, the reaper, checkpoints and resuming,
cancellation, the time limit, a lost lease and transient database errors."""

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from model_core import Model, train
from service.db import attempts, dispatch
from service.db.models import EpochMetric, JobCheckpoint, TrainedModel, TrainingJob, utcnow
from service.settings import Settings
from service.vocabulary import JobStatus
from tests.factories import XOR_NETWORK, queued_xor_job, xor_training
from worker import faults
from worker.lease import Heartbeat
from worker.retries import retry_transient
from worker.training import run_training

FAST = Settings(metrics_flush_seconds=0.0, checkpoint_every_epochs=10, heartbeat_seconds=0.05)


class WorkerDied(BaseException):
    """Stands for a SIGKILL: nothing of the attempt runs after it, not even its error paths."""


def job_row(sessions, job_id: int) -> TrainingJob:
    with sessions() as session:
        return session.get(TrainingJob, job_id)


def epochs_of(sessions, job_id: int) -> list[int]:
    with sessions() as session:
        statement = select(EpochMetric.epoch).where(EpochMetric.job_id == job_id)
        return sorted(session.scalars(statement))


def set_job(sessions, job_id: int, **values) -> None:
    with sessions() as session:
        session.execute(update(TrainingJob).where(TrainingJob.id == job_id).values(**values))
        session.commit()


def expire_lease(sessions, job_id: int) -> None:
    set_job(sessions, job_id, lease_expires_at=utcnow() - timedelta(seconds=1))


def claim(sessions, job_id: int, max_attempts: int = 3) -> attempts.Claim | None:
    with sessions() as session:
        return attempts.claim_job(session, job_id, "test", 15, max_attempts)


def die_after_checkpoint(monkeypatch, at_epoch: int) -> None:
    """Kill the attempt right after its flush of ``at_epoch`` committed."""
    real = attempts.record_progress

    def record_then_die(session, job_id, attempt, records, checkpoint):
        cancel = real(session, job_id, attempt, records, checkpoint)
        if records and records[-1]["epoch"] == at_epoch:
            raise WorkerDied
        return cancel

    monkeypatch.setattr(attempts, "record_progress", record_then_die)


def test_a_live_lease_keeps_a_second_delivery_out_and_an_expired_one_lets_it_in(sessions):
    job_id = queued_xor_job(sessions)
    assert claim(sessions, job_id).attempt == 1
    assert claim(sessions, job_id) is None
    expire_lease(sessions, job_id)
    assert claim(sessions, job_id) == attempts.Claim(attempt=2, resume_epoch=0)
    expire_lease(sessions, job_id)
    assert claim(sessions, job_id, max_attempts=2) is None


def test_a_cancelled_queued_job_is_never_claimed(sessions):
    job_id = queued_xor_job(sessions)
    set_job(sessions, job_id, status=JobStatus.CANCELLED)
    assert run_training(sessions, job_id) is None
    assert job_row(sessions, job_id).attempt == 0


def test_the_reaper_requeues_fails_a_poison_job_and_ends_a_cancelled_one(sessions):
    requeued, poison, cancelled, alive = (queued_xor_job(sessions) for _ in range(4))
    for job_id in (requeued, poison, cancelled, alive):
        claim(sessions, job_id)
    for job_id in (requeued, poison, cancelled):
        expire_lease(sessions, job_id)
    set_job(sessions, poison, attempt=3)
    set_job(sessions, cancelled, cancel_requested=True)
    with sessions() as session:
        moved = dispatch.reap_expired_leases(session, max_attempts=3)
    assert moved == {
        JobStatus.CANCELLED: [cancelled],
        JobStatus.FAILED: [poison],
        JobStatus.QUEUED: [requeued],
    }
    assert job_row(sessions, requeued).dispatched_at is None
    assert "died on every attempt (3 of 3)" in job_row(sessions, poison).error
    assert job_row(sessions, alive).status == JobStatus.RUNNING


def test_a_job_may_set_its_own_checkpoint_interval(sessions, monkeypatch):
    job_id = queued_xor_job(sessions, epochs=60)
    set_job(sessions, job_id, training={**xor_training(60), "checkpoint_every_epochs": 7})
    die_after_checkpoint(monkeypatch, at_epoch=30)
    with pytest.raises(WorkerDied):
        run_training(sessions, job_id, FAST)
    assert job_row(sessions, job_id).checkpoint_epoch == 28


DROPOUT_NETWORK = {
    "layers": [
        {"units": 8, "activation": "tanh", "dropout": 0.25},
        {"units": 2, "activation": "softmax"},
    ]
}
# Dropout masks, a plateau's counters and a warm-up, all across the kill (issue 26).
DROPOUT_TRAINING = {
    **xor_training(60),
    "optimizer": {"name": "sgd", "learning_rate": 0.5, "momentum": 0.9},
    "schedule": {"name": "plateau", "factor": 0.5, "patience": 1, "threshold": 0.05},
    "warmup_epochs": 5,
    "clip_norm": 1.0,
}


@pytest.mark.parametrize(
    ("network", "training"),
    [(XOR_NETWORK, xor_training(60)), (DROPOUT_NETWORK, DROPOUT_TRAINING)],
    ids=["adam", "dropout, plateau, warm-up, clipping"],
)
def test_a_killed_attempt_resumes_from_its_checkpoint_to_the_uninterrupted_result(
    sessions, monkeypatch, network, training
):
    job_id = queued_xor_job(sessions, epochs=60, network=network)
    set_job(sessions, job_id, training=training)
    die_after_checkpoint(monkeypatch, at_epoch=35)
    with pytest.raises(WorkerDied):
        run_training(sessions, job_id, FAST)
    assert epochs_of(sessions, job_id) == list(range(1, 36))
    assert job_row(sessions, job_id).checkpoint_epoch == 30
    monkeypatch.undo()

    expire_lease(sessions, job_id)
    with sessions() as session:
        dispatch.reap_expired_leases(session, max_attempts=3)
    assert run_training(sessions, job_id, FAST) is JobStatus.SUCCEEDED

    job = job_row(sessions, job_id)
    assert (job.status, job.attempt, job.epoch) == ("succeeded", 2, 60)
    assert job.checkpoint_epoch is None  # its checkpoint was deleted with the ending
    assert epochs_of(sessions, job_id) == list(range(1, 61))
    uninterrupted = train(
        np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), np.array([0, 1, 1, 0]), network, training
    )
    with sessions() as session:
        blob = session.scalars(select(TrainedModel.blob).where(TrainedModel.job_id == job_id)).one()
        rows = session.scalars(
            select(EpochMetric).where(EpochMetric.job_id == job_id).order_by(EpochMetric.epoch)
        ).all()
        assert session.scalars(select(JobCheckpoint)).all() == []
    for (w, b), (w_ref, b_ref) in zip(
        Model.from_bytes(blob).weights, uninterrupted.model.weights, strict=True
    ):
        assert np.array_equal(w, w_ref) and np.array_equal(b, b_ref)
    figures = ("epoch", "train_loss", "train_accuracy", "learning_rate")
    assert [tuple(getattr(row, name) for name in figures) for row in rows] == [
        tuple(record[name] for name in figures) for record in uninterrupted.history
    ]


def test_checkpoints_replace_each_other_and_ride_on_flushes(sessions, monkeypatch):
    saved = []
    real = attempts.record_progress

    def spy(session, job_id, attempt, records, checkpoint):
        saved.append(None if checkpoint is None else checkpoint.epoch)
        return real(session, job_id, attempt, records, checkpoint)

    monkeypatch.setattr(attempts, "record_progress", spy)
    job_id = queued_xor_job(sessions, epochs=35)
    run_training(sessions, job_id, FAST)
    assert [epoch for epoch in saved if epoch] == [10, 20, 30]
    with sessions() as session:
        assert session.scalars(select(JobCheckpoint)).all() == []


def test_a_running_job_asked_to_cancel_stops_and_keeps_its_history(sessions, monkeypatch):
    job_id = queued_xor_job(sessions, epochs=5000)
    real = attempts.record_progress

    def cancel_after_epoch_100(session, job_id, attempt, records, checkpoint):
        if records and records[-1]["epoch"] == 100:
            set_job(sessions, job_id, cancel_requested=True)
        return real(session, job_id, attempt, records, checkpoint)

    monkeypatch.setattr(attempts, "record_progress", cancel_after_epoch_100)
    assert run_training(sessions, job_id, FAST) is JobStatus.CANCELLED
    job = job_row(sessions, job_id)
    assert (job.status, job.epoch, job.error) == ("cancelled", 100, None)
    assert epochs_of(sessions, job_id) == list(range(1, 101))


def test_the_time_limit_fails_the_job_with_its_own_message(sessions):
    job_id = queued_xor_job(sessions, epochs=100_000)
    with sessions() as session:
        job = session.get(TrainingJob, job_id)
        job.training = {**job.training, "max_seconds": 0.2}
        session.commit()
    # The default flush interval: FAST's commit after every epoch stretched these 0.2 s of
    # epochs to 4 s, and the records held back must be written when the limit stops the job.
    assert run_training(sessions, job_id) is JobStatus.FAILED
    job = job_row(sessions, job_id)
    assert job.error.startswith("exceeded training.max_seconds=0.2: stopped after epoch ")
    assert 0 < job.epoch < 100_000
    assert epochs_of(sessions, job_id) == list(range(1, job.epoch + 1))


def test_an_attempt_that_loses_its_lease_stops_and_writes_nothing_more(sessions, monkeypatch):
    job_id = queued_xor_job(sessions, epochs=5000)
    real = attempts.record_progress

    def taken_over_after_epoch_50(session, job_id, attempt, records, checkpoint):
        cancel = real(session, job_id, attempt, records, checkpoint)
        if records and records[-1]["epoch"] == 50:
            set_job(sessions, job_id, attempt=attempt + 1)
        return cancel

    monkeypatch.setattr(attempts, "record_progress", taken_over_after_epoch_50)
    assert run_training(sessions, job_id, FAST) is None
    job = job_row(sessions, job_id)
    assert (job.status, job.attempt, job.epoch) == ("running", 2, 50)
    assert epochs_of(sessions, job_id) == list(range(1, 51))


def test_the_heartbeat_renews_the_lease_and_notices_when_it_is_lost(sessions):
    job_id = queued_xor_job(sessions)
    attempt = claim(sessions, job_id).attempt
    first = job_row(sessions, job_id).lease_expires_at
    with Heartbeat.of_job(sessions, job_id, attempt, 15, interval=0.02) as heartbeat:
        heartbeat.lost.wait(0.2)
        assert job_row(sessions, job_id).lease_expires_at > first
        set_job(sessions, job_id, attempt=attempt + 1)
        assert heartbeat.lost.wait(2)


def test_a_heartbeat_that_fails_tries_again_an_interval_later(sessions):
    tries = []

    def unreachable(_session) -> None:
        tries.append(1)
        raise OperationalError("UPDATE", {}, Exception("connection refused"))

    heartbeat = Heartbeat(sessions, unreachable, 15, 5.0, "job 1")
    heartbeat.renewed_at -= 60  # the last renewal long ago: a beat is due
    assert heartbeat._until_due() == 0
    assert heartbeat._beat_once() and tries == [1] and not heartbeat.lost.is_set()
    assert heartbeat._until_due() > 0


def test_a_flush_that_meets_a_transient_error_keeps_its_records(sessions, monkeypatch):
    real = attempts.record_progress
    failures = []

    def fail_once(session, job_id, attempt, records, checkpoint):
        if not failures:
            failures.append(len(records))
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return real(session, job_id, attempt, records, checkpoint)

    monkeypatch.setattr(attempts, "record_progress", fail_once)
    job_id = queued_xor_job(sessions, epochs=20)
    assert run_training(sessions, job_id, FAST) is JobStatus.SUCCEEDED
    assert failures == [1]
    assert epochs_of(sessions, job_id) == list(range(1, 21))


def test_transient_errors_are_retried_with_backoff_and_permanent_ones_raised_at_once():
    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        return "done"

    assert retry_transient(flaky, "test", sleep=sleeps.append) == "done"
    assert sleeps == [0.1, 0.2, 0.4]

    def broken():
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    calls.clear()
    with pytest.raises(IntegrityError):
        retry_transient(broken, "test", sleep=sleeps.append)
    assert len(calls) == 1


def test_the_poison_hook_is_inert_without_its_environment_variable(monkeypatch):
    monkeypatch.delenv(faults.KILL_WORKER_ON_DATASET, raising=False)
    faults.die_if_poisoned("xor")  # still alive
    monkeypatch.setenv(faults.KILL_WORKER_ON_DATASET, "another")
    faults.die_if_poisoned("xor")
