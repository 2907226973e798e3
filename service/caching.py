"""A small least-recently-used cache, per process, bounded by a total size."""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """Values keyed by ``K``, the least recently used evicted once their sizes exceed ``max_size``.

    ``size_of(value)`` measures an entry (1 by default: then ``max_size`` counts entries).
    Only for values that never change under their key: there is no invalidation but ``evict``.
    """

    def __init__(self, max_size: int, size_of: Callable[[V], int] = lambda _value: 1):
        self.max_size = max_size
        self.size_of = size_of
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: K, load: Callable[[], V | None]) -> V | None:
        """The value for ``key``, calling ``load`` only when it is not cached (None: not found)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        value = load()
        if value is not None:
            self._put(key, value)
        return value

    def _put(self, key: K, value: V) -> None:
        size = self.size_of(value)
        with self._lock:
            if key in self._entries or size > self.max_size:
                return
            self._entries[key] = (value, size)
            self._size += size
            while self._size > self.max_size:
                _, (_, evicted_size) = self._entries.popitem(last=False)
                self._size -= evicted_size

    def evict(self, key: K) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._size -= entry[1]

    def clear(self) -> None:
        """Drop every entry (tests that share one app start each on an empty cache)."""
        with self._lock:
            self._entries.clear()
            self._size = 0


class GenerationalCache(Generic[K, V]):
    """Values valid for one generation token: a token unlike the last one seen drops them all.

    For values that may change under their key when the token changes (what a model reference
    names). A value loaded while the token moved is not kept: it may predate the change. Entries
    also live at most ``max_age`` seconds, a backstop should a change ever fail to move the token.
    """

    def __init__(self, max_age: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.max_age = max_age
        self.clock = clock
        self._token: object = object()
        self._entries: dict[K, V] = {}
        self._filled_at = clock()
        self._lock = threading.Lock()

    def get(self, token: object, key: K, load: Callable[[], V | None]) -> V | None:
        """The value for ``key`` under ``token``, calling ``load`` on a miss (None: not found,
        not kept)."""
        with self._lock:
            now = self.clock()
            if token != self._token or now - self._filled_at > self.max_age:
                self._token, self._entries, self._filled_at = token, {}, now
            entries = self._entries
            if key in entries:
                return entries[key]
        value = load()
        if value is not None:
            with self._lock:
                if self._entries is entries:
                    entries[key] = value
        return value

    def clear(self) -> None:
        """Drop every entry and forget the token (as ``LruCache.clear``)."""
        with self._lock:
            self._token, self._entries, self._filled_at = object(), {}, self.clock()
