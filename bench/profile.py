"""Where model_core's training time goes: ``python -m bench.profile --workload b``.

Prints the time of the matrix products alone for one epoch of the workload (the ceiling on any
NumPy implementation at that batch size), model_core's own time for the same epoch, and a cProfile
of model_core sorted by the time spent inside each function.
"""

import argparse
import cProfile
import pstats
import time
from dataclasses import replace

from bench.products import prepare_products
from bench.workloads import (
    Workload,
    digits_workload,
    model_core_specs,
    synthetic_workloads,
    tutorial_workload,
)
from model_core import train


def matmul_seconds(w: Workload, repeats: int = 5) -> float:
    """Best time of the matrix products of one epoch alone (see bench.products)."""
    run = prepare_products(replace(w, epochs=1))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def model_core_seconds(w: Workload, repeats: int = 5) -> float:
    network, training = model_core_specs(w)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        train(w.X, w.y, network=network, training=training, task="classification")
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices="abcd", default="b")
    parser.add_argument("--rows", type=int, default=60_000, help="rows of the synthetic data")
    parser.add_argument("--top", type=int, default=15, help="functions of the profile to show")
    args = parser.parse_args(argv)
    workloads = {
        "a": digits_workload(epochs=1),
        **{w.name: w for w in synthetic_workloads(args.rows, epochs=1)},
        "d": tutorial_workload(epochs=1),
    }
    w = workloads[args.workload]
    train(w.X, w.y, *model_core_specs(w))
    products, ours = matmul_seconds(w), model_core_seconds(w)
    print(f"({w.name}) {w.title}, one epoch of {len(w.X)} rows, best of 5:")
    print(f"  matrix products alone {products:.3f} s ({len(w.X) / products:,.0f} samples/s)")
    print(
        f"  model_core            {ours:.3f} s ({len(w.X) / ours:,.0f} samples/s), "
        f"{100 * (ours - products) / ours:.0f}% of it outside the products"
    )
    network, training = model_core_specs(w)
    profiler = cProfile.Profile()
    profiler.runcall(train, w.X, w.y, network=network, training=training)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
