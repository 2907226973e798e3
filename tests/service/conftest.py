import dataclasses

import pytest
from sqlalchemy import func, select

from service.api.app import create_app
from service.db.models import Dataset, EpochMetric, TrainedModel, TrainingJob
from service.settings import Settings
from tests.conftest import database_url

MAX_REQUEST_BYTES = 200_000


@pytest.fixture
def settings(tmp_path, sessions) -> Settings:
    """Settings on the database of ``sessions`` (SQLite, or PostgreSQL where parametrized)."""
    return Settings(
        database_url=database_url(sessions),
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        max_request_bytes=MAX_REQUEST_BYTES,
        max_predict_rows=50,
        max_dataset_rows=1000,
        max_dataset_cells=5000,
        # Tests make many requests at once: limits that still run, but that none of them reach
        # (tests/service/test_rate_limits.py sets its own).
        rate_limit="100000/second",
        predict_rate_limit="100000/second",
    )


@pytest.fixture
def app(settings, sessions):
    """The app on the database of ``sessions`` (tables created there)."""
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def client_with(settings, sessions):
    """A function: a test client of a new app with ``changes`` to ``settings``."""

    def make(**changes):
        app = create_app(dataclasses.replace(settings, **changes))
        app.config["TESTING"] = True
        return app.test_client()

    return make


@pytest.fixture
def row_counts(sessions):
    """A function returning how many rows each table holds."""

    def count() -> dict[str, int]:
        with sessions() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (Dataset, TrainingJob, EpochMetric, TrainedModel)
            }

    return count


@pytest.fixture
def queued_messages(app):
    return app.extensions["backprop"].queue.queued_messages
