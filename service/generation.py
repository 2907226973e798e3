"""The registry generation: a token every API process checks per prediction, and that every
change of what a model reference means (a new version, an alias set, moved or deleted, a model
deleted) changes, so that caches of resolved references are dropped on the very next request in
every process without a database round trip while nothing changes.

Redis holds it when the broker is Redis (an ``INCR``ed key: one ``GET`` per request); otherwise a
file beside the SQLite database, replaced on each change by a new random token (one small read
per request): the embedded default, where every process shares one disk.
"""

import os
import threading
import uuid
from pathlib import Path
from typing import Protocol

import redis

from service.settings import Settings

REDIS_KEY = "backprop:registry-generation"
REDIS_TIMEOUT_SECONDS = 1.0


class Generation(Protocol):
    def current(self) -> object:
        """A token equal to the last one read as long as nothing changed."""

    def bump(self) -> None:
        """Tell every process that references may now resolve differently."""


class RedisGeneration:
    def __init__(self, url: str):
        self.client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )

    def current(self) -> object:
        """The counter; while Redis is unreachable a new token per call (so every request
        resolves from the database: slower, never stale)."""
        try:
            return self.client.get(REDIS_KEY)
        except redis.RedisError:
            return object()

    def bump(self) -> None:
        self.client.incr(REDIS_KEY)


class FileGeneration:
    def __init__(self, path: Path):
        self.path = path

    def current(self) -> object:
        """The file's text: a new random token at each bump (a stat would not do: inodes are
        reused and a coarse clock gives two bumps one mtime)."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def bump(self) -> None:
        """Replace the file at once with a new random token (readers see the old or the new)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        temporary.write_text(uuid.uuid4().hex)
        os.replace(temporary, self.path)


def generation_for(settings: Settings) -> Generation:
    """Redis when the broker is Redis, else the file beside the database."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisGeneration(settings.broker_url)
    return FileGeneration(settings.registry_generation_path())
