"""The registry generation: a token every API process checks per prediction, and that every
change of what a model reference means (a new version, an alias set, moved or deleted, a model
deleted) changes, so that caches of resolved references are dropped on the very next request in
every process without a database round trip while nothing changes.

Redis holds it when the broker is Redis, and pushes it: each change sets the key to a new random
token and publishes that token on a channel, in one script; each process subscribes once and, per
request, takes whatever the subscription has delivered with a non-blocking read of its socket (a
``poll``, no round trip). Redis writes the message to every subscriber's socket in the same turn
of its loop as its reply to the change, so on one host a request that could know of the change
(it came after the change's answer) finds the message already in its process's socket; across
hosts the bound is the network's delivery time (docs/benchmarks.md, issue 29, measures it). While
the subscription is down a ``GET`` per request stands in (as before), and the subscription is tried
again after ``RESUBSCRIBE_SECONDS``.

Otherwise a file beside the SQLite database, replaced on each change by a new random token (a
``stat`` per request, a read when it names another file): the embedded default, where every
process shares one disk.
"""

import contextlib
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from service.ids import uuid4_hex
from service.settings import Settings

logger = logging.getLogger(__name__)

REDIS_KEY = "backprop:registry-generation"
REDIS_CHANNEL = "backprop:registry-generation"
REDIS_TIMEOUT_SECONDS = 1.0
RESUBSCRIBE_SECONDS = 5.0
# More than a token's length (new_token): a read of the file returns the whole of it.
TOKEN_READ_BYTES = 4096
# Set the token and tell every subscriber, atomically: a subscriber that reads the key after
# subscribing misses no change.
BUMP_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
"""


class Generation(Protocol):
    def current(self) -> object:
        """A token equal to the last one read as long as nothing changed."""

    def bump(self) -> None:
        """Tell every process that references may now resolve differently."""


def new_token() -> str:
    return uuid4_hex()


class RedisGeneration:
    """The token pushed by Redis to each process (see the module's docstring). Tokens are only
    compared for equality: any message changes the token, and so drops the caches."""

    def __init__(self, url: str):
        timeouts = {
            "socket_timeout": REDIS_TIMEOUT_SECONDS,
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        }
        self.client = redis.Redis.from_url(url, **timeouts)
        # No silent reconnection for the subscription: messages sent while it was down would be
        # lost unseen; a failure instead falls back to reads until a new subscription has read
        # the key.
        self.subscriber = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **timeouts)
        self._bump = self.client.register_script(BUMP_SCRIPT)
        self._lock = threading.Lock()
        self._subscription: PubSub | None = None
        self._subscribed_pid = 0
        self._token: object = None
        self._subscribe_at = 0.0

    def current(self) -> object:
        """The last token pushed; while not subscribed the key read per call, and while Redis is
        unreachable a new token per call (so every request resolves from the database: slower,
        never stale)."""
        with self._lock:
            if self._listening():
                try:
                    return self._received()
                except redis.RedisError as error:
                    self._unsubscribe(error)
        try:
            return self.client.get(REDIS_KEY)
        except redis.RedisError:
            return object()

    def bump(self) -> None:
        self._bump(keys=[REDIS_KEY, REDIS_CHANNEL], args=[new_token()])

    def _listening(self) -> bool:
        """Subscribed in this process (a forked child subscribes anew), subscribing when due."""
        if self._subscription is not None and self._subscribed_pid == os.getpid():
            return True
        self._subscription = None
        if time.monotonic() < self._subscribe_at:
            return False
        try:
            self._subscribe()
        except redis.RedisError as error:
            self._unsubscribe(error)
            return False
        return True

    def _subscribe(self) -> None:
        """Subscribe, wait for Redis to confirm, then read the key: every later change arrives
        as a message."""
        subscription = self.subscriber.pubsub()
        subscription.subscribe(REDIS_CHANNEL)
        confirmation = subscription.get_message(timeout=REDIS_TIMEOUT_SECONDS)
        if confirmation is None or confirmation["type"] != "subscribe":
            subscription.close()
            raise redis.ConnectionError("the subscription to the registry generation timed out")
        try:
            self._token = self.client.get(REDIS_KEY)
        except redis.RedisError:
            subscription.close()
            raise
        self._subscription, self._subscribed_pid = subscription, os.getpid()

    def _received(self) -> object:
        """The token of the last message already in the socket, without waiting. The socket is
        asked first: ``get_message`` would ask it too, from under its checks and retry layer,
        which cost a request that finds nothing (nearly every one) 2 us more."""
        if not self._subscription.connection.can_read(timeout=0):
            return self._token
        while (message := self._subscription.get_message(timeout=0.0)) is not None:
            if message["type"] == "message":
                self._token = message["data"]
        return self._token

    def _unsubscribe(self, error: Exception) -> None:
        logger.warning(
            "the registry generation is read per request for %s s: its subscription failed: %s",
            RESUBSCRIBE_SECONDS,
            error,
        )
        if self._subscription is not None and self._subscribed_pid == os.getpid():
            with contextlib.suppress(redis.RedisError):
                self._subscription.close()
        self._subscription = None
        self._subscribe_at = time.monotonic() + RESUBSCRIBE_SECONDS


class FileGeneration:
    """The token in a file that each change replaces whole (``bump``): a file's token never
    changes once it is in place, so a process reads it again only when the path names another
    file. Per call that is one ``stat``, not an open, a read and a close: three system calls
    fewer, each a release of the GIL that another thread of a busy worker takes meanwhile.

    The file read last is held open: its inode cannot be reused while it is, so a file put in
    its place always has another (device, inode) than the held one (a stat's times alone would
    not do: a coarse clock gives two bumps one mtime)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._held: HeldFile | None = None

    def current(self) -> object:
        """The file's text: a new random token at each bump."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        held = self._held
        if held is not None and held.identity == (status.st_dev, status.st_ino):
            return held.token
        with self._lock:
            return self._hold_the_file()

    def _hold_the_file(self) -> object:
        """Open the file at the path, read its token, and hold it instead of the one held."""
        try:
            descriptor = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            status = os.fstat(descriptor)
            token = os.read(descriptor, TOKEN_READ_BYTES)
        except BaseException:
            os.close(descriptor)
            raise
        if self._held is not None:
            self._held.close()
        self._held = HeldFile(self, descriptor, (status.st_dev, status.st_ino), token)
        return token

    def bump(self) -> None:
        """Replace the file at once with a new random token (readers see the old or the new)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        temporary.write_text(new_token())
        os.replace(temporary, self.path)


class HeldFile:
    """A generation file held open, its (device, inode) and its token; closed when replaced
    or when its ``FileGeneration`` is collected."""

    def __init__(self, owner: FileGeneration, descriptor: int, identity: tuple, token: bytes):
        self.identity = identity
        self.token = token
        self.close = weakref.finalize(owner, os.close, descriptor)


def generation_for(settings: Settings) -> Generation:
    """Redis when the broker is Redis, else the file beside the database."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisGeneration(settings.broker_url)
    return FileGeneration(settings.registry_generation_path())
