"""A data set's arrays are stored whole on both backends; on SQLite they are written into a
``zeroblob`` row through the blob I/O, never bound to the ``INSERT``, and a failed write leaves
no row."""

import numpy as np
import pytest
from sqlalchemy import event, func, select

from service.datasets.ingest import build_dataset
from service.db import records
from service.db.models import Dataset
from service.db.npz import npz_to_arrays
from service.vocabulary import Task
from tests.conftest import BACKENDS

X = np.random.default_rng(0).normal(size=(3000, 40))  # 960 kB of features: one write and a part
Y = np.arange(3000) % 3


def new_dataset() -> Dataset:
    return build_dataset(
        name="d", task=Task.CLASSIFICATION, source="json", x=X, y=Y, target_field="targets"
    )


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_the_arrays_are_stored_whole(sessions, monkeypatch):
    monkeypatch.setattr(records, "BLOB_WRITE_BYTES", 100_000)
    with sessions() as session:
        dataset_id = records.add_dataset(session, new_dataset()).id
    with sessions() as session:
        stored = npz_to_arrays(session.get(Dataset, dataset_id).arrays)
    assert np.array_equal(stored["X"], X) and np.array_equal(stored["y"], Y)


def test_on_sqlite_no_statement_carries_the_arrays(sessions):
    largest = []

    def bound(_connection, _cursor, _statement, parameters, _context, _many):
        sizes = [len(value) for value in parameters if isinstance(value, bytes | memoryview)]
        largest.append(max(sizes, default=0))

    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", bound)
    try:
        with sessions() as session:
            records.add_dataset(session, new_dataset())
    finally:
        event.remove(engine, "before_cursor_execute", bound)
    assert max(largest) < 10_000


def test_on_sqlite_a_failed_write_leaves_no_row(sessions, monkeypatch):
    # The write fails after the row is inserted: range() refuses a step of 0.
    monkeypatch.setattr(records, "BLOB_WRITE_BYTES", 0)
    with sessions() as session, pytest.raises(ValueError):
        records.add_dataset(session, new_dataset())
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == 0
