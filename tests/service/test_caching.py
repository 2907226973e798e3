from service.caching import LruCache


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
