"""What counting one request against a rate limit in memory costs: limits' ``MemoryStorage``
(which starts a timer thread on a hit whenever its last one has run) against
``ThreadlessMemoryStorage`` (service/api/limits.py), at three gaps between hits (issue 29).

    python -m bench.rate_counts [--hits 400]

Each storage counts ``--hits`` hits of one key, ``gap`` apart (0, 1 and 20 ms: back to back, a
busy connection, a quiet one), twice in turn; the time of each ``incr`` alone is recorded, and
its mean, p50 and p99 printed in microseconds.
"""

import argparse
import time

from limits.storage import MemoryStorage

from service.api.limits import ThreadlessMemoryStorage

GAPS_SECONDS = (0.0, 0.001, 0.02)


def incr_microseconds(storage_class, gap: float, hits: int) -> list[float]:
    storage, times = storage_class(), []
    for _ in range(hits):
        time.sleep(gap)
        start = time.perf_counter()
        storage.incr("addr:127.0.0.1/predictions", 1)
        times.append((time.perf_counter() - start) * 1e6)
    return sorted(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=400)
    args = parser.parse_args(argv)
    print("| gap | storage | mean us | p50 us | p99 us |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for gap in GAPS_SECONDS:
        for _ in range(2):
            for storage_class in (MemoryStorage, ThreadlessMemoryStorage):
                times = incr_microseconds(storage_class, gap, args.hits)
                mean = sum(times) / len(times)
                p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
                print(
                    f"| {gap * 1000:.0f} ms | {storage_class.__name__} | {mean:.1f} | {p50:.1f}"
                    f" | {p99:.1f} |"
                )


if __name__ == "__main__":
    main()
