"""The Redis commands this process sends, counted by wrapping the client's connections: each
``send_packed_command`` is one round trip to the (real) server, whatever client, script or
pipeline sent it."""

import re
import threading
from contextlib import contextmanager

from redis.connection import AbstractConnection

COMMAND_NAME = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n")


@contextmanager
def sent_on_this_thread(monkeypatch):
    """A list filled, until the block ends, with one list of command names per round trip this
    thread makes (other threads, such as the prediction log's, are not counted)."""
    sent: list[list[str]] = []
    thread = threading.get_ident()
    original = AbstractConnection.send_packed_command

    def send_packed_command(self, command, check_health=True):
        if threading.get_ident() == thread:
            payload = command if isinstance(command, bytes) else b"".join(command)
            sent.append([name.decode().upper() for name in COMMAND_NAME.findall(payload)])
        return original(self, command, check_health)

    with monkeypatch.context() as patch:
        patch.setattr(AbstractConnection, "send_packed_command", send_packed_command)
        yield sent
