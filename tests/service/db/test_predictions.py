"""The prediction log's storage: retention by age, by rows per version and of deleted models,
each in batches (the dispatcher's ``LogUpkeep``), on SQLite and PostgreSQL; and on PostgreSQL,
inserts go on while a batch is being deleted."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import delete, func, insert, select, text

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
        one_row_request(f"{start + i:032x}", model_id, created, inputs=[0.0, 1.0]) for i in range(n)
    ]
    with sessions() as session:
        predictions.write_batch(session, rows)


def one_row_request(prediction_id, model_id, created_at, inputs=None, tenant="default"):
    shared = (prediction_id, tenant, model_id, None, None, None, None, 0.5, created_at)
    return predictions.LogRows(shared, ([0], [inputs], [1], [None]))


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
            predictions.write_batch(inserting, [one_row_request("e" * 32, model_id, utcnow())])
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


def batch_of_two_requests(model_id: int) -> list[predictions.LogRows]:
    """A classifier's request of two rows with its inputs and names, and a regressor's of one
    row without inputs or probabilities, of another tenant."""
    created = datetime(2026, 12, 7, 13, 1, 2, 345678, tzinfo=UTC)
    classifier = predictions.LogRows(
        ("a" * 32, "default", model_id, "digits", 3, "production", "canary", 1.25, created),
        (
            [0, 1],
            [np.array([0.5, -1.0]), np.array([1e-300, 2.0])],
            [7, 2],
            [np.array([0.25, 0.75]), np.array([1.0, 0.0])],
        ),
    )
    regressor = predictions.LogRows(
        ("b" * 32, "acme", model_id, None, None, None, None, 0.5, created),
        ([0], [None], [[1.5, -2.5]], [None]),
    )
    return [classifier, regressor]


def stored_rows(session) -> list[tuple]:
    """The log's rows as the database holds them (the driver's values, no type processing)."""
    columns = ", ".join(predictions.SHARED_COLUMNS + predictions.ROW_COLUMNS + ("label",))
    sql = f"SELECT {columns} FROM prediction_logs ORDER BY prediction_id, row"
    return [tuple(found) for found in session.connection().exec_driver_sql(sql)]


def test_a_batch_is_stored_as_sqlalchemys_insert_stores_it(sessions):
    model_id = trained_model(sessions)
    batch = batch_of_two_requests(model_id)
    with sessions() as session:
        assert predictions.write_batch(session, batch) == 3
        written = stored_rows(session)
        read = session.scalars(select(PredictionRecord).order_by(PredictionRecord.id)).all()
        session.execute(delete(PredictionRecord))
        columns = predictions.SHARED_COLUMNS + predictions.ROW_COLUMNS
        as_dicts = [
            dict(zip(columns, request.shared + row, strict=True))
            for request in batch
            for row in zip(*request.columns, strict=True)
        ]
        session.execute(insert(PredictionRecord), as_dicts)
        assert written == stored_rows(session)
    expected = [
        ("a" * 32, 0, "default", "digits", 3, "production", "canary", [0.5, -1.0], 7, [0.25, 0.75]),
        ("a" * 32, 1, "default", "digits", 3, "production", "canary", [1e-300, 2.0], 2, [1.0, 0.0]),
        ("b" * 32, 0, "acme", None, None, None, None, None, [1.5, -2.5], None),
    ]
    for record, values in zip(read, expected, strict=True):
        kept = (record.prediction_id, record.row, record.tenant, record.model_name)
        kept += (record.model_version, record.alias, record.split_arm)
        arrays = [None if a is None else a.tolist() for a in (record.inputs, record.probabilities)]
        assert kept + (arrays[0], record.prediction, arrays[1]) == values
        assert record.model_id == model_id and record.label is None
        assert record.created_at == datetime(2026, 12, 7, 13, 1, 2, 345678, tzinfo=UTC)
    assert [record.latency_ms for record in read] == [1.25, 1.25, 0.5]


def test_a_batch_of_more_rows_than_one_insert_takes_is_stored_whole_and_in_order(sessions):
    model_id = trained_model(sessions)
    n = 2 * predictions.SQLITE_ROWS_PER_INSERT + 5
    created = utcnow()
    batch = [
        one_row_request(f"{i:032x}", model_id, created, inputs=[float(i), -0.5 * i])
        for i in range(n)
    ]
    with sessions() as session:
        assert predictions.write_batch(session, batch) == n
        found = session.execute(
            select(PredictionRecord.prediction_id, PredictionRecord.inputs).order_by(
                PredictionRecord.id
            )
        ).all()
    assert [prediction_id for prediction_id, _ in found] == [f"{i:032x}" for i in range(n)]
    assert [inputs.tolist() for _, inputs in found] == [[float(i), -0.5 * i] for i in range(n)]
