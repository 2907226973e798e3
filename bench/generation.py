"""How stale the registry generation pushed by Redis can be (service/generation.py): one
process moves the generation, another polls for it as a request does.

    python -m bench.generation [--changes 2000] [--gap-ms 2]

The reader is a separate process that calls ``RedisGeneration.current()`` in a loop (each call
a non-blocking poll of its subscription's socket, as at the start of a request) and notes the
``CLOCK_MONOTONIC`` time (shared by every process on the host) at which each new token first
appears, and when the last poll that still returned the old token began. The writer notes when
Redis answered each ``bump()``, waiting ``--gap-ms`` between changes. Reported: how long after a
change was answered a poll could still begin and miss it (negative: every poll begun after the
answer saw it), as percentiles and the worst: the staleness a request in another process can
meet. (When the reader was descheduled across two changes, those changes are not observed one
by one and are left out.) Also the cost of one ``current()`` while subscribed, against the
``GET`` it replaces.
"""

import argparse
import multiprocessing
import statistics
import time

import redis

from service.generation import REDIS_KEY, RedisGeneration

REDIS_URL = "redis://127.0.0.1:6379/15"  # tests use 1 to 9, bench.service 12, bench.serving 14
QUIET_SECONDS = 2.0


def read_changes(url: str, ready, seen) -> None:
    """Poll until no new token came for ``QUIET_SECONDS``; put, per new token, when the last
    poll that still returned the old one began."""
    generation = RedisGeneration(url)
    token = generation.current()
    ready.set()
    last_old_poll = {}
    previous_began = time.monotonic_ns()
    polled_at = quiet_since = time.monotonic()
    while polled_at - quiet_since < QUIET_SECONDS:
        began = time.monotonic_ns()
        now_token = generation.current()
        if now_token != token:
            last_old_poll[now_token] = previous_began
            token, quiet_since = now_token, time.monotonic()
        previous_began, polled_at = began, time.monotonic()
    seen.put(last_old_poll)


def per_call_microseconds(call, calls: int = 20_000) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(share * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--gap-ms", type=float, default=2.0)
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    ready, seen = context.Event(), context.Queue()
    reader = context.Process(target=read_changes, args=(args.redis_url, ready, seen))
    reader.start()
    ready.wait()
    writer, client = RedisGeneration(args.redis_url), redis.Redis.from_url(args.redis_url)
    changes = []  # (token, answered)
    for _ in range(args.changes):
        writer.bump()
        answered = time.monotonic_ns()
        changes.append((client.get(REDIS_KEY), answered))
        time.sleep(args.gap_ms / 1000)
    last_old_poll = seen.get()
    reader.join()
    # How long after the change was answered a poll could still begin and return the old token.
    stale_for = [
        (last_old_poll[token] - answered) / 1000
        for token, answered in changes
        if token in last_old_poll
    ]
    print(f"{args.changes} changes, {args.gap_ms} ms apart, the reader in another process;")
    print(f"{len(stale_for)} observed one by one")
    figures = ", ".join(
        f"p{int(share * 100)} {percentile(stale_for, share):.1f}" for share in (0.5, 0.99)
    )
    print(f"last stale poll began after the answer by (us): {figures}, worst {max(stale_for):.1f}")
    stale = sum(delay > 0 for delay in stale_for)
    print(f"changes with a poll begun after their answer that missed them: {stale}")
    reader_here = RedisGeneration(args.redis_url)
    reader_here.current()
    client = redis.Redis.from_url(args.redis_url)
    subscribed = statistics.median(per_call_microseconds(reader_here.current) for _ in range(3))
    read = statistics.median(per_call_microseconds(lambda: client.get(REDIS_KEY)) for _ in range(3))
    print(f"one current() subscribed: {subscribed:.1f} us; one GET: {read:.1f} us")


if __name__ == "__main__":
    main()
