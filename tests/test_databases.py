"""The databases the tests share (tests/conftest.py): a reset leaves every table empty and its
ids counting from 1 again, as on a new database; and no two pytest-xdist workers share one."""

import pytest
from sqlalchemy import func, select

from service.db.models import Base
from service.settings import Settings
from tests.conftest import (
    BACKENDS,
    DATABASE_FIXTURES,
    MAX_XDIST_WORKERS,
    REDIS_DBS_PER_WORKER,
    redis_db_url,
    xdist_worker,
)
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


def test_no_two_xdist_workers_nor_roles_share_a_redis_db(monkeypatch):
    urls = []
    for worker in range(MAX_XDIST_WORKERS):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
        urls += [redis_db_url(role) for role in range(REDIS_DBS_PER_WORKER)]
    numbers = [int(url.rsplit("/", 1)[1]) for url in urls]
    assert len(set(numbers)) == len(numbers)
    assert set(numbers) <= set(range(1, 16))  # Redis's 16 dbs, but 0: `make run`'s
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{MAX_XDIST_WORKERS}")
    with pytest.raises(pytest.fail.Exception, match="there are Redis dbs for"):
        redis_db_url(0)


def test_the_session_database_is_this_workers_own(postgres_url):
    assert postgres_url.rsplit("/", 1)[1].startswith(f"backprop_test_{xdist_worker()}_")


def test_what_settings_keeps_under_var_goes_to_a_folder_of_the_sessions(tmp_path_factory):
    on_postgresql = Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:5432/x")
    for path in (on_postgresql.registry_generation_path(), on_postgresql.secret_key_path()):
        assert path.is_relative_to(tmp_path_factory.getbasetemp()), path
