"""A data set's arrays written in pieces (service/db/blob_writes.py), on SQLite and PostgreSQL:
byte for byte as packed, and a failure part way leaves no row behind; on SQLite the WAL's
checkpoint waits for ``checkpoint_wal``."""

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from service import memory
from service.datasets.ingest import build_dataset
from service.db import blob_writes, records
from service.db.blob_writes import checkpoint_wal
from service.db.models import Dataset, DatasetBlob
from service.vocabulary import Task
from tests.conftest import BACKENDS
from tests.factories import fail_blob_writes_after_one_piece

both_backends = pytest.mark.parametrize("sessions", BACKENDS, indirect=True)


def packed_regression(n_rows: int):
    """A data set whose ``.npz`` is several pieces long: 3 x 8 bytes a row, and a header."""
    x = np.arange(n_rows * 2, dtype=np.float64).reshape(n_rows, 2) + 0.1
    return build_dataset(
        name="pieces", task=Task.REGRESSION, source="json", x=x, y=x[:, 0], target_field="y"
    )


def row_counts(sessions) -> tuple[int, int]:
    with sessions() as session:
        datasets = session.scalar(select(func.count()).select_from(Dataset))
        return datasets, session.scalar(select(func.count()).select_from(DatasetBlob))


@both_backends
def test_arrays_of_several_pieces_are_stored_byte_for_byte(sessions):
    n_rows = 3 * blob_writes.PIECE_BYTES // 24 + 1000
    with packed_regression(n_rows) as packed:
        assert packed.row.stored_bytes > 3 * blob_writes.PIECE_BYTES
        packed_bytes = packed.npz.read()
        packed.npz.seek(0)
        with sessions() as session:
            dataset_id = records.add_dataset(session, packed.row, packed.npz).id
    with sessions() as session:
        assert bytes(session.get(DatasetBlob, dataset_id).arrays) == packed_bytes
        x, y, weights = records.get_dataset_arrays(session, dataset_id)
    assert x.shape == (n_rows, 2) and x[-1, 1] == n_rows * 2 - 1 + 0.1
    np.testing.assert_array_equal(y, x[:, 0])
    assert weights is None


@both_backends
def test_a_failure_part_way_through_the_arrays_leaves_neither_row(sessions, monkeypatch):
    fail_blob_writes_after_one_piece(monkeypatch)
    packed = packed_regression(2 * blob_writes.PIECE_BYTES // 24)
    with packed, sessions() as session, pytest.raises(OSError, match="went away"):
        records.add_dataset(session, packed.row, packed.npz)
    assert row_counts(sessions) == (0, 0)


@both_backends
def test_deleting_a_data_set_deletes_its_arrays(sessions):
    with packed_regression(10) as packed, sessions() as session:
        dataset = records.add_dataset(session, packed.row, packed.npz)
        records.delete_row(session, dataset)
    assert row_counts(sessions) == (0, 0)


def lent_settings(connection) -> tuple:
    """What an upload's insert changes on its SQLite connection while it holds it."""
    pragmas = ("wal_autocheckpoint", "cache_size")
    return tuple(connection.execute(f"PRAGMA {pragma}").fetchone()[0] for pragma in pragmas)


def test_sqlite_leaves_the_checkpoint_to_checkpoint_wal_and_the_connection_as_it_was(sessions):
    """The commit syncs the WAL (the data set is stored); the copy into the database file waits
    for ``checkpoint_wal``, and the connection goes back to the pool checkpointing as before."""
    engine = sessions.kw["bind"]
    database = Path(engine.url.database)
    n_rows = 2 * 1000 * 4096 // 24  # twice the WAL pages past which a commit checkpoints
    with packed_regression(n_rows) as packed, sessions() as session:
        connection = session.connection().connection.dbapi_connection
        settings_before = lent_settings(connection)
        dataset_id = records.add_dataset(session, packed.row, packed.npz).id
    stored_bytes = packed.row.stored_bytes
    assert database.stat().st_size < stored_bytes
    assert lent_settings(connection) == settings_before
    with sessions() as session:
        assert len(records.get_dataset_arrays(session, dataset_id).x) == n_rows
    checkpoint_wal(engine)
    assert database.stat().st_size > stored_bytes


def test_the_page_cache_sqlite_held_is_handed_back_with_the_connection(sessions, monkeypatch):
    """The commit gives the connection back to the pool, its larger cache's memory with it."""
    trims = []
    monkeypatch.setattr(memory, "MALLOC_TRIM", trims.append)
    with packed_regression(10) as packed, sessions() as session:
        session.connection()
        assert trims == []
        records.add_dataset(session, packed.row, packed.npz)
        assert trims == [0]
