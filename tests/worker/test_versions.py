"""Version numbers of a name, taken in the transaction that stores the model: concurrent
successes of one name never share a number, on SQLite and on PostgreSQL."""

import threading

import pytest
from sqlalchemy import text

from service.db import registry
from tests.conftest import BACKENDS

WRITERS = 6


pytestmark = pytest.mark.parametrize("sessions", BACKENDS, indirect=True)


def take_versions_at_once(sessions, name: str) -> list[int]:
    """``WRITERS`` transactions that each take a version of ``name``, hold it a moment (as the
    worker holds it while writing the model), then commit; all start together."""
    start = threading.Barrier(WRITERS)
    versions, errors = [], []

    def writer():
        try:
            with sessions() as session:
                start.wait()
                version = registry.next_version(session, "default", name)
                session.execute(text("SELECT 1"))
                threading.Event().wait(0.05)
                session.commit()
                versions.append(version)
        except Exception as error:  # collected: a failure in a thread must fail the test
            errors.append(error)

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return versions


def test_concurrent_versions_of_one_name_are_all_different(sessions):
    versions = take_versions_at_once(sessions, "digits")
    assert sorted(versions) == list(range(1, WRITERS + 1))
    assert sorted(take_versions_at_once(sessions, "digits")) == list(range(7, 2 * WRITERS + 1))
    assert sorted(take_versions_at_once(sessions, "iris")) == list(range(1, WRITERS + 1))


def test_a_rolled_back_version_is_given_again(sessions):
    with sessions() as session:
        assert registry.next_version(session, "default", "digits") == 1
        session.rollback()
    with sessions() as session:
        assert registry.next_version(session, "default", "digits") == 1
