"""gunicorn's configuration from the settings."""

import gc
import io
import socket
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


def kept_alive(sock, read_ahead: bytes = b"") -> SimpleNamespace:
    """What ``next_request_arrives`` reads of a gthread connection: its socket and parser."""
    return SimpleNamespace(
        sock=sock, parser=SimpleNamespace(unreader=SimpleNamespace(buf=io.BytesIO(read_ahead)))
    )


def test_a_thread_keeps_a_connection_whose_next_request_comes_at_once():
    ours, client = socket.socketpair()
    with ours, client:
        assert not server.next_request_arrives(kept_alive(ours))  # nothing within the wait
        assert server.next_request_arrives(kept_alive(ours, b"GET / HTTP/1.1\r\n"))  # read ahead
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert server.next_request_arrives(kept_alive(ours))
        ours.recv(100)
        client.close()  # a closed connection is for the thread to finish reading
        assert server.next_request_arrives(kept_alive(ours))
