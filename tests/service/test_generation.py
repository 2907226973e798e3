"""The registry generation in Redis: pushed to each process, read without a round trip while
subscribed, read per call while the subscription is down, and every change seen."""

import pytest
import redis

from service.generation import RedisGeneration
from tests.factories import wait_until
from tests.redis_commands import sent_on_this_thread


@pytest.fixture
def generations(redis_url):
    """Two generations on one Redis: as two API processes."""
    return RedisGeneration(redis_url), RedisGeneration(redis_url)


def test_a_change_made_elsewhere_is_pushed_and_reading_it_costs_no_round_trip(
    generations, monkeypatch
):
    reader, writer = generations
    before = reader.current()  # subscribes
    with sent_on_this_thread(monkeypatch) as sent:
        assert [reader.current() for _ in range(3)] == [before] * 3
    assert sent == []
    writer.bump()
    changed = wait_until(lambda: reader.current() != before, 5, "the pushed generation")
    assert changed
    after = reader.current()
    writer.bump()
    wait_until(lambda: reader.current() != after, 5, "the second pushed generation")


def test_a_change_made_here_is_seen_here(generations):
    reader, _ = generations
    before = reader.current()
    reader.bump()
    wait_until(lambda: reader.current() != before, 5, "this process's own change")


def test_while_the_subscription_is_down_the_key_is_read_per_call(
    generations, redis_url, monkeypatch
):
    reader, writer = generations
    reader.current()
    kill_subscription(reader, redis_url)
    before = reader.current()  # finds the subscription closed: reads the key
    writer.bump()
    with sent_on_this_thread(monkeypatch) as sent:
        assert reader.current() != before  # no wait: read from Redis
    assert sent == [["GET"]]


def test_while_redis_is_unreachable_every_call_is_a_new_token():
    unreachable = RedisGeneration("redis://127.0.0.1:1/0")
    assert unreachable.current() != unreachable.current()


def kill_subscription(generation: RedisGeneration, redis_url: str) -> None:
    """Close the subscription's connection from the server's side, as a restart of Redis would."""
    port = generation._subscription.connection._sock.getsockname()[1]
    admin = redis.Redis.from_url(redis_url)
    killed = admin.client_kill_filter(addr=f"127.0.0.1:{port}")
    assert killed == 1
