"""The databases the tests share (tests/conftest.py): a reset leaves every table empty and its
ids counting from 1 again, as on a new database."""

import pytest
from sqlalchemy import func, select

from service.db.models import Base
from tests.conftest import BACKENDS, DATABASE_FIXTURES
from tests.factories import queued_xor_job


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_reset_database_is_empty_and_counts_ids_from_one(request, backend):
    database = request.getfixturevalue(DATABASE_FIXTURES[backend])
    database.reset()
    queued_xor_job(database.sessions)
    second = queued_xor_job(database.sessions)
    assert second == 2
    database.reset()
    with database.sessions() as session:
        for table in Base.metadata.sorted_tables:
            assert session.scalar(select(func.count()).select_from(table)) == 0, table.name
    assert queued_xor_job(database.sessions) == 1
