"""The engine benchmark of issue 2 ("Speed and memory"): ``python -m bench.engine [--quick]``.

Trains the same network from the same weights on the same data with model_core, scikit-learn's
MLPClassifier (float64 and float32), PyTorch on the CPU and a textbook NumPy loop, in one process;
prints samples/s, GFLOP/s (training costs about 6 x weights FLOPs per sample), the share of the
measured float32 matmul throughput, the ratios of model_core to each of them and the issue's
targets; then measures model_core's peak RSS on workload (b) in a fresh subprocess.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import threadpoolctl
import torch

from bench.frameworks import FRAMEWORKS
from bench.workloads import Workload, digits_workload, synthetic_workloads

WARM_UP_ROWS = 2048


@dataclass(frozen=True)
class Measurement:
    framework: str
    seconds: float
    samples_per_second: float
    gflops: float
    last_loss: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for a smoke run (< 1 minute)"
    )
    parser.add_argument("--rows", type=int, help="rows of the synthetic data (default 60000)")
    parser.add_argument("--epochs", type=int, help="epochs on the synthetic data (default 2)")
    parser.add_argument("--digits-epochs", type=int, help="epochs on digits (default 20)")
    parser.add_argument("--repeats", type=int, help="timed runs per framework, best kept (5)")
    parser.add_argument("--workloads", default="abc", help="which of a, b, c to run")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocess")
    args = parser.parse_args(argv)
    quick = {"rows": 8_000, "epochs": 1, "digits_epochs": 5, "repeats": 2}
    full = {"rows": 60_000, "epochs": 2, "digits_epochs": 20, "repeats": 5}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 throughput of one (n x n) @ (n x n) NumPy matmul: the physical limit."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    best = min(_seconds(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(w: Workload, repeats: int) -> list[Measurement]:
    """Warm every framework up on a few rows, then keep each one's fastest of ``repeats`` runs.

    The repeats go round-robin over the frameworks, so a burst of load from another process on
    the machine slows one run of each rather than all runs of one framework.
    """
    warm_up = replace(w, X=w.X[:WARM_UP_ROWS], y=w.y[:WARM_UP_ROWS], epochs=1)
    for prepare in FRAMEWORKS.values():
        prepare(warm_up)()
    runs = {name: prepare(w) for name, prepare in FRAMEWORKS.items()}
    best = dict.fromkeys(runs, float("inf"))
    last_loss = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            last_loss[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
    return [_measurement(name, w, best[name], last_loss[name]) for name in runs]


def _measurement(framework: str, w: Workload, seconds: float, last_loss: float) -> Measurement:
    samples_per_second = w.samples / seconds
    gflops = 6 * w.n_weights * samples_per_second / 1e9
    return Measurement(framework, seconds, samples_per_second, gflops, last_loss)


def print_machine(peak: float) -> None:
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, NumPy {np.__version__}, torch {torch.__version__}"
    )
    for pool in threadpoolctl.threadpool_info():
        if pool["user_api"] == "blas":
            print(
                f"  BLAS: {pool['internal_api']} {pool['version']} kernel "
                f"{pool.get('architecture')}, {pool['num_threads']} threads "
                f"({os.path.basename(pool['filepath'])})"
            )
    print(
        f"  torch: {torch.get_num_threads()} threads, MKL {torch.backends.mkl.is_available()}, "
        f"oneDNN {torch.backends.mkldnn.is_available()}"
    )
    print(f"  float32 matmul peak (2048^3, best of 5): {peak:.1f} GFLOP/s")


def print_workload(w: Workload, results: list[Measurement], peak: float) -> None:
    ours = results[0]
    print(
        f"\n({w.name}) {w.title}, {w.epochs} epoch(s), SGD lr {w.learning_rate} "
        f"momentum {w.momentum}, {w.n_weights} weights"
    )
    print(
        f"  {'framework':<16}{'seconds':>9}{'samples/s':>12}{'GFLOP/s':>9}{'% peak':>8}"
        f"{'last loss':>11}{'model_core x':>14}"
    )
    for m in results:
        print(
            f"  {m.framework:<16}{m.seconds:9.3f}{m.samples_per_second:12,.0f}{m.gflops:9.1f}"
            f"{100 * m.gflops / peak:7.1f}%{m.last_loss:11.4f}"
            f"{ours.samples_per_second / m.samples_per_second:13.2f}x"
        )


def check_targets(results: dict[str, dict[str, Measurement]], peak: float) -> list[str]:
    """The issue's speed targets, each as 'met' / 'NOT met' with the measured figure."""

    def ratio(workload: str, other: str) -> float:
        runs = results[workload]
        return runs["model_core"].samples_per_second / runs[other].samples_per_second

    def share(workload: str) -> float:
        return results[workload]["model_core"].gflops / peak

    targets = {
        "b": [
            ("vs pytorch", lambda: ratio("b", "pytorch"), 1.8, "x"),
            ("vs sklearn float64", lambda: ratio("b", "sklearn float64"), 4.0, "x"),
            ("of matmul peak", lambda: share("b"), 0.70, "%"),
        ],
        "c": [("of matmul peak", lambda: share("c"), 0.85, "%")],
        "a": [
            ("vs pytorch", lambda: ratio("a", "pytorch"), 5.0, "x"),
            ("vs textbook numpy", lambda: ratio("a", "textbook numpy"), 0.9, "x"),
        ],
    }
    lines = []
    for workload, checks in targets.items():
        if workload not in results:
            continue
        for label, value, target, unit in checks:
            got = value()
            shown = (
                f"{got:.2f}x >= {target}x"
                if unit == "x"
                else f"{100 * got:.1f}% >= {100 * target:.0f}%"
            )
            lines.append(
                f"  ({workload}) model_core {label}: {shown}  "
                f"{'met' if got >= target else 'NOT met'}"
            )
    return lines


def print_memory(rows: int) -> None:
    """Run bench.memory in a fresh interpreter and compare its peak RSS with the target."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--rows", str(rows)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rss = json.loads(output)
    mib = 1024 * 1024
    limit = 2 * rss["dataset"] + rss["weights"]
    used = rss["peak"] - rss["interpreter"]
    print(f"\nmemory, model_core on (b) with {rows} rows, 1 epoch, in a fresh process:")
    print(
        f"  dataset {rss['dataset'] / mib:.1f} MiB, weights {rss['weights'] / mib:.2f} MiB, "
        f"target 2 x dataset + weights = {limit / mib:.1f} MiB"
    )
    print(
        f"  RSS after imports {rss['interpreter'] / mib:.1f} MiB, with the data "
        f"{rss['before_training'] / mib:.1f} MiB, peak {rss['peak'] / mib:.1f} MiB"
    )
    print(
        f"  peak minus interpreter {used / mib:.1f} MiB "
        f"({'met' if used <= limit else 'NOT met'}); training added "
        f"{(rss['peak'] - rss['before_training']) / mib:.1f} MiB over the data"
    )


def warn_if_busy(peaks: list[float]) -> None:
    """Say so when the matmul peak moved during the run: another process competed for the CPU,
    and then no figure of the run is reliable."""
    spread = (max(peaks) - min(peaks)) / max(peaks)
    print(
        f"\nmatmul peak before each workload and at the end: "
        f"{', '.join(f'{peak:.1f}' for peak in peaks)} GFLOP/s"
    )
    if spread > 0.1:
        print(
            f"WARNING: it varied by {100 * spread:.0f}%: the machine was busy during this run; "
            "repeat it on an idle machine"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    peaks = [matmul_peak_gflops()]
    print_machine(peaks[0])
    workloads = [digits_workload(args.digits_epochs), *synthetic_workloads(args.rows, args.epochs)]
    results = {}
    for w in workloads:
        if w.name not in args.workloads:
            continue
        if results:
            peaks.append(matmul_peak_gflops())
        measured = measure(w, args.repeats)
        results[w.name] = {m.framework: m for m in measured}
        print_workload(w, measured, peaks[0])
    print("\ntargets (issue 2):")
    print("\n".join(check_targets(results, peaks[0])))
    if not args.no_memory:
        print_memory(args.rows)
    peaks.append(matmul_peak_gflops())
    warn_if_busy(peaks)


if __name__ == "__main__":
    main()
