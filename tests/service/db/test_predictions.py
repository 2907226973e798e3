"""The prediction log's storage: retention by age, by rows per version and of deleted models,
each in batches (the dispatcher's ``LogUpkeep``), on SQLite and PostgreSQL; and on PostgreSQL,
inserts go on while a batch is being deleted."""

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, text

from service.db import predictions
from service.db.models import PredictionBinCount, PredictionRecord, TrainedModel, utcnow
from service.dispatcher import LogUpkeep, until_none_left
from service.settings import Settings
from tests.conftest import BACKENDS
from tests.factories import queued_xor_job
from worker.training import run_training

pytestmark = pytest.mark.parametrize("sessions", BACKENDS, indirect=True)


def trained_model(sessions) -> int:
    job_id = queued_xor_job(sessions, epochs=5)
    run_training(sessions, job_id)
    with sessions() as session:
        return session.scalar(select(TrainedModel.id).where(TrainedModel.job_id == job_id))


def log_rows(sessions, model_id: int, n: int, age: timedelta = timedelta(0), start: int = 0):
    created = utcnow() - age
    rows = [
        {
            "prediction_id": f"{start + i:032x}",
            "row": 0,
            "tenant": "default",
            "model_id": model_id,
            "inputs": [0.0, 1.0],
            "prediction": 1,
            "latency_ms": 0.5,
            "created_at": created,
        }
        for i in range(n)
    ]
    with sessions() as session:
        predictions.write_batch(session, rows)


def model_rows(sessions, model_id: int) -> list[int]:
    with sessions() as session:
        statement = select(PredictionRecord.id).where(PredictionRecord.model_id == model_id)
        return list(session.scalars(statement.order_by(PredictionRecord.id)))


def test_retention_deletes_old_rows_rows_beyond_the_maximum_and_a_deleted_models(sessions):
    kept, gone = trained_model(sessions), trained_model(sessions)
    log_rows(sessions, kept, 7, age=timedelta(days=31))
    log_rows(sessions, kept, 12, start=100)
    log_rows(sessions, gone, 3, start=200)
    newest = model_rows(sessions, kept)[-10:]
    with sessions() as session:
        session.execute(delete(TrainedModel).where(TrainedModel.id == gone))
        session.commit()
    upkeep = LogUpkeep(Settings(prediction_log_days=30, prediction_log_max_rows=10))
    assert upkeep.delete_expired(sessions) == 7 + 2 + 3
    assert model_rows(sessions, kept) == newest
    assert model_rows(sessions, gone) == []


def test_each_batch_deletes_at_most_its_size(sessions):
    model_id = trained_model(sessions)
    log_rows(sessions, model_id, 25, age=timedelta(days=2))
    before = utcnow() - timedelta(days=1)
    batches = []

    def one_batch() -> int:
        with sessions() as session:
            batches.append(predictions.delete_older_than(session, before, 10))
        return batches[-1]

    assert until_none_left(one_batch) == 25
    assert batches == [10, 10, 5, 0]


def test_inserts_go_on_while_a_batch_is_deleted(sessions):
    if sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time by design")
    model_id = trained_model(sessions)
    log_rows(sessions, model_id, 20, age=timedelta(days=2))
    with sessions() as deleting:
        ids = list(deleting.scalars(select(PredictionRecord.id).limit(10)))
        deleting.execute(delete(PredictionRecord).where(PredictionRecord.id.in_(ids)))
        # the batch's transaction is still open: an insert must not wait for it
        with sessions() as inserting:
            inserting.execute(text("SET LOCAL lock_timeout = '2s'"))
            predictions.write_batch(
                inserting,
                [
                    {
                        "prediction_id": "e" * 32,
                        "row": 0,
                        "tenant": "default",
                        "model_id": model_id,
                        "prediction": 0,
                        "latency_ms": 1.0,
                        "created_at": utcnow(),
                    }
                ],
            )
        deleting.commit()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(PredictionRecord)) == 11


def test_bin_counts_add_up_and_go_with_their_hour_or_their_model(sessions):
    kept, gone = trained_model(sessions), trained_model(sessions)
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    old = hour - timedelta(days=31)

    def counts(model_id, when, n):
        return [
            {
                "tenant": "default",
                "model_id": model_id,
                "hour": when,
                "feature": f,
                "bin": 1,
                "count": n,
            }
            for f in range(2)
        ]

    with sessions() as session:
        predictions.add_bin_counts(session, counts(kept, hour, 3) + counts(kept, old, 1))
        predictions.add_bin_counts(session, counts(kept, hour, 4) + counts(gone, hour, 2))
        assert sorted(predictions.bin_counts_since(session, kept, hour)) == [(0, 1, 7), (1, 1, 7)]
        session.execute(delete(TrainedModel).where(TrainedModel.id == gone))
        session.commit()
    LogUpkeep(Settings(prediction_log_days=30)).delete_expired(sessions)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(PredictionBinCount)) == 2
        assert sorted(predictions.bin_counts_since(session, kept, old)) == [(0, 1, 7), (1, 1, 7)]
