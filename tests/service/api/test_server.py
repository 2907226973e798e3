"""gunicorn's configuration from the settings."""

import pytest

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
