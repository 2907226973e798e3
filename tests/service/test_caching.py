import contextlib
import gc
import os

from service.caching import GenerationalCache, LruCache
from service.generation import FileGeneration


def test_loads_once_and_evicts_the_least_recently_used_beyond_the_size():
    loads = []
    cache = LruCache(max_size=10, size_of=len)

    def loader(value):
        return lambda: loads.append(value) or value

    assert cache.get("a", loader("aaaa")) == "aaaa"
    assert cache.get("a", loader("other")) == "aaaa"
    cache.get("b", loader("bbbb"))
    cache.get("a", loader("aaaa"))
    cache.get("c", loader("cccc"))
    assert cache.get("b", loader("bbbb")) == "bbbb"
    assert loads == ["aaaa", "bbbb", "cccc", "bbbb"]


def test_missing_values_and_oversized_values_are_not_kept():
    cache = LruCache(max_size=3, size_of=len)
    assert cache.get("a", lambda: None) is None
    cache.get("big", lambda: "toolarge")
    assert cache.get("big", lambda: "reloaded") == "reloaded"


def test_evict():
    cache = LruCache(max_size=2)
    cache.get(1, lambda: "one")
    cache.evict(1)
    assert cache.get(1, lambda: "again") == "again"


def test_a_generational_cache_drops_everything_when_the_token_moves():
    cache, loads = GenerationalCache(), []

    def load(value):
        return lambda: loads.append(value) or value

    assert cache.get("t1", "digits", load(1)) == 1
    assert cache.get("t1", "digits", load(2)) == 1
    assert cache.get("t2", "digits", load(3)) == 3
    assert cache.get("t2", "absent", load(None)) is None
    assert loads == [1, 3, None]


def test_a_generational_cache_forgets_what_is_older_than_its_max_age():
    now = [0.0]
    cache = GenerationalCache(max_age=30, clock=lambda: now[0])
    assert cache.get("t", "digits", lambda: 1) == 1
    now[0] = 29.0
    assert cache.get("t", "digits", lambda: 2) == 1
    now[0] = 31.0
    assert cache.get("t", "digits", lambda: 3) == 3


def test_every_bump_of_a_file_generation_gives_a_token_never_seen(tmp_path):
    generation = FileGeneration(tmp_path / "registry.generation")
    assert generation.current() is None
    tokens = set()
    for _ in range(300):
        generation.bump()
        tokens.add(generation.current())
    assert len(tokens) == 300


def test_clear_drops_every_entry():
    lru, generational = LruCache(max_size=2), GenerationalCache()
    lru.get(1, lambda: "one")
    generational.get("t", 1, lambda: "one")
    lru.clear()
    generational.clear()
    assert lru.get(1, lambda: "again") == "again"
    assert generational.get("t", 1, lambda: "again") == "again"


def test_a_file_generation_sees_every_bump_by_another_process_on_its_next_read(tmp_path):
    reader, writer = (FileGeneration(tmp_path / "registry.generation") for _ in range(2))
    assert reader.current() is None
    writer.bump()
    tokens = [reader.current()]
    for _ in range(50):
        assert reader.current() == tokens[-1]  # nothing changed: the same token
        writer.bump()
        tokens.append(reader.current())
        assert tokens[-1] == (tmp_path / "registry.generation").read_bytes()
    assert len(set(tokens)) == 51
    (tmp_path / "registry.generation").unlink()
    assert reader.current() is None


def test_a_file_generation_reads_its_file_again_only_when_it_was_replaced(tmp_path, monkeypatch):
    generation = FileGeneration(tmp_path / "registry.generation")
    generation.bump()
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *args: opened.append(args) or real_open(*args))
    for _ in range(20):
        generation.current()
    assert len(opened) == 1
    generation.bump()
    generation.current()
    assert len(opened) == 2


def test_a_file_generation_holds_one_file_open_and_closes_it_when_collected(tmp_path):
    def files_open_in(folder) -> list[str]:
        """What this process's descriptors name in ``folder`` (a replaced file: "(deleted)")."""
        names = []
        for descriptor in os.listdir("/proc/self/fd"):
            with contextlib.suppress(FileNotFoundError):  # the listing's own, closed since
                names.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        return [name for name in names if name.startswith(str(folder))]

    generation = FileGeneration(tmp_path / "registry.generation")
    for _ in range(5):
        generation.bump()
        generation.current()
    assert files_open_in(tmp_path) == [str(tmp_path / "registry.generation")]
    del generation
    gc.collect()
    assert files_open_in(tmp_path) == []
