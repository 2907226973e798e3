"""The API's fixtures. An app is built once per distinct ``Settings`` in the test session (its
OpenAPI document, blueprints and engine are the costly part) and put back as new before each
test that uses it: its caches emptied, its rate counts and request figures zeroed, and its
extensions and config as ``create_app`` left them. The database and the embedded broker's queue
are emptied before each test."""

import dataclasses

import pytest
from celery import Celery
from flask import Flask
from sqlalchemy import func, select

from service.api.app import create_app
from service.api.events import StreamSlots
from service.broker import create_celery_app
from service.db.models import Dataset, EpochMetric, TrainedModel, TrainingJob
from service.settings import Settings
from tests.conftest import database_url

MAX_REQUEST_BYTES = 200_000


@dataclasses.dataclass(frozen=True)
class SharedApp:
    """An app and what a test may change in it, as ``create_app`` left them."""

    app: Flask
    extensions: dict
    config: dict

    @classmethod
    def build(cls, settings: Settings) -> "SharedApp":
        app = testing_app(settings)
        return cls(app, dict(app.extensions), dict(app.config))

    def reset(self) -> Flask:
        """The app as new: what a test swapped in put back, and nothing counted or cached."""
        app = self.app
        app.extensions.clear()
        app.extensions.update(self.extensions, event_streams=StreamSlots())
        app.config.clear()
        app.config.update(self.config)
        services = app.extensions["backprop"]
        for cache in (services.models, services.refs, services.keys):
            cache.clear()
        if "rate_limits" in app.extensions:
            app.extensions["rate_limits"].reset()
        if "http_metrics" in app.extensions:
            app.extensions["http_metrics"].reset()
        if "prediction_log" in app.extensions:
            app.extensions["prediction_log"].clear()
        return app


def testing_app(settings: Settings) -> Flask:
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


def empty_task_queue(celery: Celery) -> None:
    with celery.connection_for_write() as connection:
        connection.default_channel.queue_purge(celery.conf.task_default_queue)


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory) -> tuple[str, Celery]:
    """The embedded broker of every test's settings (its URL), and a Celery app on it."""
    url = f"sqla+sqlite:///{tmp_path_factory.mktemp('broker') / 'broker.sqlite'}"
    return url, create_celery_app(Settings(broker_url=url))


@pytest.fixture
def broker_url(embedded_broker) -> str:
    """The embedded broker's URL, its task queue emptied."""
    url, celery = embedded_broker
    empty_task_queue(celery)
    return url


@pytest.fixture
def settings(sessions, broker_url) -> Settings:
    """Settings on the database of ``sessions`` (SQLite, or PostgreSQL where parametrized)."""
    return Settings(
        database_url=database_url(sessions),
        broker_url=broker_url,
        max_request_bytes=MAX_REQUEST_BYTES,
        max_predict_rows=50,
        max_dataset_rows=1000,
        max_dataset_cells=5000,
        # Tests make many requests at once: limits that still run, but that none of them reach
        # (tests/service/api/test_rate_limits.py sets its own).
        rate_limit="100000/second",
        predict_rate_limit="100000/second",
    )


@pytest.fixture(scope="session")
def shared_apps() -> dict[Settings, SharedApp]:
    return {}


@pytest.fixture
def app(settings, sessions, shared_apps):
    """The app of ``settings`` on the database of ``sessions``, as new. Afterwards its
    prediction log is emptied (waiting for a write its thread has begun), so that no row of
    this test is written into the next test's tables after they are reset."""
    if settings not in shared_apps:
        shared_apps[settings] = SharedApp.build(settings)
    app = shared_apps[settings].reset()
    yield app
    if "prediction_log" in app.extensions:
        app.extensions["prediction_log"].clear()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def client_with(settings, sessions):
    """A function: a test client of a new app with ``changes`` to ``settings`` (two calls, two
    apps: as two API processes)."""

    made = []

    def make(**changes):
        made.append(testing_app(dataclasses.replace(settings, **changes)))
        return made[-1].test_client()

    yield make
    for app in made:  # as the app fixture: no late row of theirs in the next test's tables
        if "prediction_log" in app.extensions:
            app.extensions["prediction_log"].clear()


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
