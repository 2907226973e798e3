"""gunicorn's configuration from the settings."""

import gc
from types import SimpleNamespace

import pytest

from service.api import server
from service.api.server import GunicornApp
from service.settings import Settings


@pytest.mark.parametrize(
    ("access_log", "configured"), [("-", "-"), ("off", None), ("a.log", "a.log")]
)
def test_the_access_log_follows_the_setting(tmp_path, access_log, configured):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", access_log=access_log)
    assert GunicornApp(settings).cfg.accesslog == configured


def test_access_log_is_read_from_the_environment():
    assert Settings.from_env({"ACCESS_LOG": "off"}).access_log == "off"


def test_a_worker_freezes_its_start_up_objects_once_warmed_up(monkeypatch):
    started = {}
    monkeypatch.setattr(server, "start_warm_up", lambda *args: started.setdefault("args", args))
    worker = SimpleNamespace(
        wsgi="app", app=SimpleNamespace(readiness="readiness"), readiness_slot=3
    )
    server.warm_up_in_background(worker)
    assert started["args"] == ("app", "readiness", 3, server.freeze_long_lived_objects)


def test_frozen_objects_are_out_of_the_collectors_reach():
    try:
        server.freeze_long_lived_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the test process's objects back where they were
