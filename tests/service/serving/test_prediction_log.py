"""The prediction log's buffer: bounded (a request that does not fit is dropped and counted,
never waited for), written in one batch per flush, by its own thread when left alone, and a
batch the database refuses dropped and counted."""

import numpy as np
from sqlalchemy import func, select

from service.db.models import PredictionRecord, utcnow
from service.serving.prediction_log import LoggedRequest, PredictionLog, new_prediction_id
from tests.factories import wait_until


def logged_request(n_rows: int, model_id: int = 1) -> LoggedRequest:
    x = np.arange(2 * n_rows, dtype=np.float32).reshape(n_rows, 2)
    return LoggedRequest(
        prediction_id=new_prediction_id(),
        tenant="default",
        model_id=model_id,
        model_name="xor",
        model_version=1,
        alias="production",
        split_arm=None,
        x=x,
        keep_inputs=True,
        predictions=np.array(["a", "b"] * n_rows)[:n_rows],
        probabilities=np.full((n_rows, 2), 0.5),
        latency_ms=0.25,
        created_at=utcnow(),
    )


def count(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(PredictionRecord))


def test_a_request_that_does_not_fit_is_dropped_and_counted(sessions):
    counted = []
    log = PredictionLog(sessions, capacity=5, flush_seconds=3600, on_dropped=counted.append)
    assert log.record(logged_request(3))
    assert not log.record(logged_request(3))
    assert log.record(logged_request(2))
    assert (log.dropped, counted) == (3, [3])
    assert log.flush() == 5
    assert count(sessions) == 5
    assert log.record(logged_request(3))  # room again once written


def test_rows_are_stored_as_answered(sessions):
    log = PredictionLog(sessions, capacity=100, flush_seconds=3600)
    request = logged_request(2)
    log.record(request)
    log.flush()
    with sessions() as session:
        rows = session.scalars(select(PredictionRecord).order_by(PredictionRecord.row)).all()
    assert [(r.row, r.inputs.tolist(), r.prediction, r.probabilities.tolist()) for r in rows] == [
        (0, [0.0, 1.0], "a", [0.5, 0.5]),
        (1, [2.0, 3.0], "b", [0.5, 0.5]),
    ]
    assert {(r.prediction_id, r.alias, r.model_name, r.label) for r in rows} == {
        (request.prediction_id, "production", "xor", None)
    }


def test_the_thread_writes_without_being_asked(sessions):
    log = PredictionLog(sessions, capacity=100, flush_seconds=0.05)
    log.record(logged_request(4))
    wait_until(lambda: count(sessions) == 4, timeout=30, what="the buffer written")
    log.close()


def test_a_batch_the_database_refuses_is_dropped_and_counted(sessions):
    log = PredictionLog(sessions, capacity=100, flush_seconds=3600)
    log.record(logged_request(2))
    log.record(logged_request(2))
    duplicate = logged_request(1)
    log.record(duplicate)
    log.record(duplicate)  # (prediction_id, row) is unique: the batch fails whole
    assert log.flush() == 0
    assert log.dropped == 6
    assert count(sessions) == 0
