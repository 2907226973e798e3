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


def test_train_threads_default_to_one_and_take_more():
    assert Settings().train_threads == 1
    assert Settings.from_env({"TRAIN_THREADS": "2"}).train_threads == 2
    with pytest.raises(ValueError, match="TRAIN_THREADS=0: must be 1 or more"):
        Settings.from_env({"TRAIN_THREADS": "0"})


def test_warm_models_are_tenant_reference_pairs():
    settings = Settings.from_env({"WARM_MODELS": "acme/digits@production, acme/42,beta/iris:3"})
    assert settings.warm_model_refs() == [
        ("acme", "digits@production"),
        ("acme", "42"),
        ("beta", "iris:3"),
    ]
    assert Settings().warm_model_refs() == []


@pytest.mark.parametrize("item", ["digits@production", "/42", "acme/", "Acme/42"])
def test_a_warm_model_that_is_not_tenant_reference_names_the_item(item):
    with pytest.raises(ValueError, match=f"WARM_MODELS: '{item}' is not tenant/reference"):
        Settings(warm_models=item)


def test_warm_models_stay_within_their_maximum_and_the_cache():
    with pytest.raises(ValueError, match="WARM_MODELS names 2 models, more than WARM_MODELS_MAX=1"):
        Settings(warm_models="a/1,a/2", warm_models_max=1)
    with pytest.raises(ValueError, match=r"WARM_MODELS_MAX=33: must be between 0 and MODEL_CACHE"):
        Settings(warm_models_max=33)
    with pytest.raises(ValueError, match="WARM_MODELS_MAX=-1"):
        Settings(warm_models_max=-1)
    assert Settings(warm_models_max=0, model_cache_size=1).warm_models_max == 0


def test_a_drain_lasts_zero_seconds_or_more():
    assert Settings.from_env({"DRAIN_SECONDS": "0"}).drain_seconds == 0
    with pytest.raises(ValueError, match="DRAIN_SECONDS=-1.0: must be 0 or more"):
        Settings(drain_seconds=-1.0)


def test_predictions_take_turns_of_zero_or_more():
    assert Settings().predict_concurrency == 2
    assert Settings.from_env({"PREDICT_CONCURRENCY": "0"}).predict_concurrency == 0
    with pytest.raises(ValueError, match="PREDICT_CONCURRENCY=-1: must be 0 or more"):
        Settings(predict_concurrency=-1)
