"""The flush of a running attempt on both databases (one statement on PostgreSQL): epoch rows,
latest figures, lease and checkpoint together; fenced by the attempt and by the stored history,
which the recorder mends from memory when the database lost acknowledged commits."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from service.db import attempts
from service.db.models import EpochMetric, JobCheckpoint, TrainingJob, utcnow
from tests.conftest import BACKENDS
from tests.factories import queued_xor_job
from worker.lease import Heartbeat
from worker.recorder import MAX_FLUSH_SLOWDOWN, EpochRecorder, RecordingPolicy

pytestmark = pytest.mark.parametrize("sessions", BACKENDS, indirect=True)


def record(epoch: int) -> dict:
    return {
        "epoch": epoch,
        "train_loss": 1.0 / epoch,
        "val_loss": None,
        "train_accuracy": 0.5,
        "val_accuracy": None,
        "learning_rate": 0.1,
        "seconds": 0.01,
    }


def running(sessions) -> tuple[int, int]:
    job_id = queued_xor_job(sessions)
    with sessions() as session:
        return job_id, attempts.claim_job(session, job_id, "test", 15, 3).attempt


def flush(sessions, job_id, attempt, epochs, checkpoint=None, **how) -> bool:
    batch = attempts.EpochRecords([record(epoch) for epoch in epochs], **how)
    with sessions() as session:
        return attempts.record_progress(session, job_id, attempt, batch, checkpoint)


def stored(sessions, job_id) -> list[tuple[int, float]]:
    with sessions() as session:
        rows = session.execute(
            select(EpochMetric.epoch, EpochMetric.train_loss)
            .where(EpochMetric.job_id == job_id)
            .order_by(EpochMetric.epoch)
        )
        return [tuple(row) for row in rows]


def test_a_flush_writes_rows_figures_lease_and_checkpoint_together(sessions):
    job_id, attempt = running(sessions)
    before = utcnow()
    assert flush(sessions, job_id, attempt, [1, 2, 3], lease_seconds=60, synchronous=False) is False
    assert flush(sessions, job_id, attempt, [4], attempts.Checkpoint(4, b"state")) is False
    assert flush(sessions, job_id, attempt, [5], attempts.Checkpoint(5, b"later")) is False
    assert stored(sessions, job_id) == [(epoch, 1.0 / epoch) for epoch in range(1, 6)]
    with sessions() as session:
        job = session.get(TrainingJob, job_id)
        assert (job.epoch, job.train_loss, job.checkpoint_epoch) == (5, 0.2, 5)
        assert job.lease_expires_at >= before + timedelta(seconds=59)
        checkpoint = session.get(JobCheckpoint, job_id)
        assert (checkpoint.epoch, checkpoint.blob, checkpoint.stored_bytes) == (5, b"later", 5)


def test_a_flush_after_lost_epochs_writes_nothing_and_says_where_history_ends(sessions):
    job_id, attempt = running(sessions)
    flush(sessions, job_id, attempt, [1, 2])
    with pytest.raises(attempts.HistoryGap) as gap:
        flush(sessions, job_id, attempt, [4, 5])
    assert gap.value.stored_epoch == 2
    assert stored(sessions, job_id) == [(1, 1.0), (2, 0.5)]
    with sessions() as session:
        session.execute(update(TrainingJob).values(attempt=attempt + 1))
        session.commit()
    with pytest.raises(attempts.StaleAttempt):
        flush(sessions, job_id, attempt, [3])


def lose_epochs_after(sessions, job_id: int, epoch: int) -> None:
    """What a crash of PostgreSQL does to asynchronous commits it had acknowledged."""
    with sessions() as session:
        session.execute(
            delete(EpochMetric).where(EpochMetric.job_id == job_id, EpochMetric.epoch > epoch)
        )
        session.execute(update(TrainingJob).where(TrainingJob.id == job_id).values(epoch=epoch))
        session.commit()


def test_the_recorder_writes_again_the_epochs_the_database_lost(sessions):
    job_id, attempt = running(sessions)
    policy = RecordingPolicy(0.0, 10**6, 10**6, 10**6)
    recorder = EpochRecorder(sessions, job_id, attempt, policy, threading.Event())
    for epoch in range(1, 6):
        recorder(record(epoch))
    lose_epochs_after(sessions, job_id, 2)
    recorder(record(6))
    assert stored(sessions, job_id) == [(epoch, 1.0 / epoch) for epoch in range(1, 7)]
    lose_epochs_after(sessions, job_id, 4)
    recorder.pending.append(record(7))
    with sessions() as session:
        assert [r["epoch"] for r in recorder.unwritten(session)] == [5, 6, 7]


def test_the_recorder_drops_the_epochs_of_a_commit_whose_answer_was_lost(sessions):
    job_id, attempt = running(sessions)
    policy = RecordingPolicy(0.0, 10**6, 10**6, 10**6)
    recorder = EpochRecorder(sessions, job_id, attempt, policy, threading.Event())
    recorder(record(1))
    flush(sessions, job_id, attempt, [2, 3])  # committed, but the recorder never heard back
    recorder.pending = [record(2), record(3), record(4)]
    recorder.flush()
    assert stored(sessions, job_id) == [(epoch, 1.0 / epoch) for epoch in range(1, 5)]
    assert (recorder.pending, recorder.stored_epoch) == ([], 4)


def test_slow_flushes_stretch_the_interval_and_quick_ones_bring_it_back(sessions):
    job_id, attempt = running(sessions)
    now = [0.0]
    policy = RecordingPolicy(0.5, 10**6, 10**6, 10**6)
    recorder = EpochRecorder(
        sessions, job_id, attempt, policy, threading.Event(), clock=lambda: now[0]
    )
    recorder._adapt_interval(0.4)
    assert recorder.flush_seconds == 0.5
    recorder._adapt_interval(0.6)
    recorder._adapt_interval(1.2)
    assert recorder.flush_seconds == 2.0
    for _ in range(10):
        recorder._adapt_interval(100)
    assert recorder.flush_seconds == MAX_FLUSH_SLOWDOWN * 0.5
    heartbeat = Heartbeat.of_job(sessions, job_id, attempt, 15, interval=3.0)
    with_lease = EpochRecorder(sessions, job_id, attempt, policy, heartbeat.lost, lease=heartbeat)
    for _ in range(10):
        with_lease._adapt_interval(100)
    assert with_lease.flush_seconds == 1.5
    for _ in range(10):
        recorder._adapt_interval(0.001)
    assert recorder.flush_seconds == 0.5
