import pytest

from service.settings import Settings


def test_defaults_need_no_server():
    settings = Settings.from_env({})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.broker_url.startswith("sqla+sqlite:///")
    assert settings.port == 8000


def test_environment_overrides_and_parses():
    settings = Settings.from_env(
        {"PORT": "9000", "METRICS_FLUSH_SECONDS": "0.25", "BROKER_URL": ""}
    )
    assert (settings.port, settings.metrics_flush_seconds) == (9000, 0.25)
    assert settings.broker_url == Settings().broker_url


def test_bare_postgres_urls_use_psycopg_3():
    url = Settings.from_env({"DATABASE_URL": "postgres://app@db/app"}).database_url
    assert url == "postgresql+psycopg://app@db/app"


def test_a_bad_value_names_the_variable():
    with pytest.raises(ValueError, match="PORT"):
        Settings.from_env({"PORT": "eighty"})


def test_sqlite_paths_are_the_embedded_files():
    settings = Settings(database_url="sqlite:///a/db.sqlite", broker_url="redis://h:6379/0")
    assert [str(path) for path in settings.sqlite_paths()] == ["a/db.sqlite"]


def test_a_shadow_queue_has_a_bound():
    with pytest.raises(ValueError, match="SHADOW_QUEUE_SIZE=0: must be 1 or more"):
        Settings.from_env({"SHADOW_QUEUE_SIZE": "0"})
