"""The engine benchmark of issues 2 and 13: ``python -m bench.engine [--quick] [--json PATH]``.

Trains the same network from the same weights on the same data with model_core, scikit-learn's
MLPClassifier (float64 and float32), PyTorch on the CPU and a textbook NumPy loop, in one process,
beside the workload's matrix products alone (the ceiling on any NumPy loop); at batch 1 (workload
(d)) against the tutorial's per-sample NumPy loop instead. Prints samples/s, GFLOP/s (training
costs about 6 x weights FLOPs per sample), the share of the measured float32 matmul throughput,
the ratios of model_core to each of them and both issues' targets, met or not; then measures
model_core's peak RSS on workload (b) in a fresh subprocess. ``--json`` also writes all of it to
a file, so that runs can be compared over time.
"""

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import threadpoolctl
import torch

from bench.frameworks import (
    FRAMEWORKS,
    PER_SAMPLE_FRAMEWORKS,
    Train,
    model_core_runner,
    train_of_tree,
)
from bench.workloads import Workload, digits_workload, synthetic_workloads, tutorial_workload
from model_core.parallel import DEFAULT_THREADS

WARM_UP_ROWS = 2048
# The row --compare-threads adds: model_core with every pass on the calling thread.
ONE_THREAD = "model_core 1 thread"
# The row --before adds: another checkout's model_core, at its default threads.
BEFORE = "model_core before"


@dataclass(frozen=True)
class Measurement:
    framework: str
    seconds: float
    samples_per_second: float
    gflops: float
    last_loss: float


@dataclass(frozen=True)
class Target:
    """One speed or memory target of an issue, with the figure of this run."""

    issue: int
    workload: str
    label: str
    value: float
    target: float
    unit: str  # "x" for a ratio, "%" for a share

    @property
    def met(self) -> bool:
        return self.value >= self.target

    def __str__(self) -> str:
        shown = (
            f"{self.value:.2f}x >= {self.target}x"
            if self.unit == "x"
            else f"{100 * self.value:.1f}% >= {100 * self.target:.0f}%"
        )
        return f"  ({self.workload}) model_core {self.label}: {shown}  {self.verdict}"

    @property
    def verdict(self) -> str:
        return "met" if self.met else "NOT met"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for a smoke run (< 1 minute)"
    )
    parser.add_argument("--rows", type=int, help="rows of the synthetic data (default 60000)")
    parser.add_argument("--epochs", type=int, help="epochs on the synthetic data (default 2)")
    parser.add_argument("--digits-epochs", type=int, help="epochs on digits (default 20)")
    parser.add_argument("--tutorial-epochs", type=int, help="epochs of (d), batch 1 (default 3)")
    parser.add_argument("--repeats", type=int, help="timed runs per framework, best kept (5)")
    parser.add_argument("--workloads", default="abcd", help="which of a, b, c, d to run")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocess")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH as JSON")
    parser.add_argument(
        "--threads",
        type=int,
        help="threads of model_core's elementwise passes and update (default: model_core's)",
    )
    parser.add_argument(
        "--compare-threads",
        action="store_true",
        help="also time model_core with every pass on one thread (as before issue 29)",
    )
    parser.add_argument(
        "--frameworks",
        help="comma-separated frameworks to time (default: all), e.g. 'model_core,products alone'",
    )
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also time the model_core of another checkout (DIR holds its model_core), in turn "
        "with this one, e.g. after `git worktree add /tmp/before main`",
    )
    args = parser.parse_args(argv)
    quick = {"rows": 8_000, "epochs": 1, "digits_epochs": 5, "tutorial_epochs": 1, "repeats": 2}
    full = {"rows": 60_000, "epochs": 2, "digits_epochs": 20, "tutorial_epochs": 3, "repeats": 5}
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


def frameworks_for(
    w: Workload,
    threads: int | None = None,
    compare_threads: bool = False,
    names: str | None = None,
    before: Callable | None = None,
) -> dict[str, Callable[[Workload], Train]]:
    """Batch 1 compares with the tutorial's per-sample loop; every other batch size with all.
    ``threads``: model_core's (None: its default); ``compare_threads`` adds model_core on one
    thread beside it; ``before`` (another tree's ``train``) adds that tree's model_core;
    ``names`` (comma-separated) keeps only those frameworks, model_core's rows always."""
    base = PER_SAMPLE_FRAMEWORKS if w.batch_size == 1 else FRAMEWORKS
    ours = {"model_core": base["model_core"] if threads is None else model_core_runner(threads)}
    if compare_threads:
        ours[ONE_THREAD] = model_core_runner(1)
    if before is not None:
        ours[BEFORE] = model_core_runner(None, before)
    frameworks = ours | {name: prepare for name, prepare in base.items() if name not in ours}
    if names is not None:
        kept = {"model_core", ONE_THREAD, BEFORE, *(name.strip() for name in names.split(","))}
        frameworks = {name: prepare for name, prepare in frameworks.items() if name in kept}
    return frameworks


def measure(
    w: Workload, repeats: int, frameworks: dict[str, Callable[[Workload], Train]]
) -> list[Measurement]:
    """Warm every framework up on a few rows, then keep each one's fastest of ``repeats`` runs.

    The repeats go round-robin over the frameworks, so a burst of load from another process on
    the machine slows one run of each rather than all runs of one framework.
    """
    warm_up = replace(w, X=w.X[:WARM_UP_ROWS], y=w.y[:WARM_UP_ROWS], epochs=1)
    for prepare in frameworks.values():
        prepare(warm_up)()
    runs = {name: prepare(w) for name, prepare in frameworks.items()}
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


def machine() -> dict:
    """What the figures depend on: CPU, versions, the BLAS libraries and their threads."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "blas": [
            {key: pool.get(key) for key in ("internal_api", "version", "architecture")}
            | {"threads": pool["num_threads"], "library": os.path.basename(pool["filepath"])}
            for pool in threadpoolctl.threadpool_info()
            if pool["user_api"] == "blas"
        ],
    }


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo where there is one ("AMD EPYC")."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def print_machine(info: dict, peak: float) -> None:
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"NumPy {info['numpy']}, torch {info['torch']}"
    )
    for pool in info["blas"]:
        print(
            f"  BLAS: {pool['internal_api']} {pool['version']} kernel {pool['architecture']}, "
            f"{pool['threads']} threads ({pool['library']})"
        )
    print(
        f"  torch: {info['torch_threads']} threads, MKL {torch.backends.mkl.is_available()}, "
        f"oneDNN {torch.backends.mkldnn.is_available()}"
    )
    print(f"  float32 matmul peak (2048^3, best of 5): {peak:.1f} GFLOP/s")


def print_workload(w: Workload, results: list[Measurement], peak: float) -> None:
    ours = results[0]
    print(
        f"\n({w.name}) {w.title}, {w.epochs} epoch(s), SGD lr {w.learning_rate} "
        f"momentum {w.momentum}, {w.n_weights} weights; 'products alone' is the same matrix "
        "products at the same batch size, and nothing else"
    )
    print(
        f"  {'framework':<20}{'seconds':>9}{'samples/s':>12}{'GFLOP/s':>9}{'% peak':>8}"
        f"{'last loss':>11}{'model_core x':>14}"
    )
    for m in results:
        print(
            f"  {m.framework:<20}{m.seconds:9.3f}{m.samples_per_second:12,.0f}{m.gflops:9.1f}"
            f"{100 * m.gflops / peak:7.1f}%{m.last_loss:11.4f}"
            f"{ours.samples_per_second / m.samples_per_second:13.2f}x"
        )


def check_targets(results: dict[str, dict[str, Measurement]], peak: float) -> list[Target]:
    """Both issues' speed targets that this run's workloads can judge."""

    def ratio(workload: str, other: str, ours: str = "model_core") -> float:
        runs = results[workload]
        return runs[ours].samples_per_second / runs[other].samples_per_second

    def share(workload: str) -> float:
        return results[workload]["model_core"].gflops / peak

    checks = {
        "b": [
            (2, "vs pytorch", lambda: ratio("b", "pytorch"), 1.8, "x"),
            (2, "vs sklearn float64", lambda: ratio("b", "sklearn float64"), 4.0, "x"),
            (2, "of matmul peak", lambda: share("b"), 0.70, "%"),
            (13, "vs pytorch", lambda: ratio("b", "pytorch"), 1.8, "x"),
            (13, "of the products-alone rate", lambda: ratio("b", "products alone"), 0.55, "%"),
            (29, "vs pytorch", lambda: ratio("b", "pytorch"), 2.0, "x"),
        ],
        "c": [
            (2, "of matmul peak", lambda: share("c"), 0.85, "%"),
            (13, "of the products-alone rate", lambda: ratio("c", "products alone"), 0.90, "%"),
            (29, "of the products-alone rate", lambda: ratio("c", "products alone"), 0.90, "%"),
        ],
        "a": [
            (2, "vs pytorch", lambda: ratio("a", "pytorch"), 5.0, "x"),
            (2, "vs textbook numpy", lambda: ratio("a", "textbook numpy"), 0.9, "x"),
            (13, "vs textbook numpy", lambda: ratio("a", "textbook numpy"), 1.1, "x"),
            (13, "vs pytorch", lambda: ratio("a", "pytorch"), 6.0, "x"),
        ],
        "d": [(13, "vs per-sample numpy", lambda: ratio("d", "per-sample numpy"), 1.0, "x")],
    }
    # model_core against another run of itself: another checkout's, and its one-thread path.
    others = ((BEFORE, "before (--before)"), (ONE_THREAD, "on 1 thread"))
    for w in "bc":
        for other, called in others:
            checks[w] += [
                (29, f"vs itself {called}", lambda w=w, o=other: ratio(w, o), 1.0, "x"),
                (
                    29,
                    f"{called}, of the products-alone rate",
                    lambda w=w, o=other: ratio(w, "products alone", o),
                    0.90,
                    "%",
                ),
            ]
    return [
        Target(issue, workload, label, value(), target, unit)
        for workload, targets in checks.items()
        if workload in results
        for issue, label, value, target, unit in targets
        if _can_judge(results[workload], label)
    ]


def _can_judge(runs: dict[str, Measurement], label: str) -> bool:
    """Whether this run timed what a target compares (``--frameworks`` may leave some out)."""
    needed = {
        "pytorch": "pytorch",
        "sklearn": "sklearn float64",
        "textbook": "textbook numpy",
        "per-sample": "per-sample numpy",
        "products-alone": "products alone",
        "1 thread": ONE_THREAD,
        "before": BEFORE,
    }
    return all(name in runs for word, name in needed.items() if word in label)


def print_targets(targets: list[Target]) -> None:
    for issue in sorted({t.issue for t in targets}):
        print(f"\ntargets (issue {issue}):")
        print("\n".join(str(t) for t in targets if t.issue == issue))


def print_memory(rows: int) -> dict[str, int]:
    """Run bench.memory in a fresh interpreter, compare its peak RSS with the target and return
    its figures (bytes)."""
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
    return rss | {"limit": limit, "met": used <= limit}


def write_json(path: str, document: dict) -> None:
    """The run as JSON (NaN, e.g. the products' loss, as null)."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list):
            return [clean(item) for item in value]
        return value

    with open(path, "w") as file:
        json.dump(clean(document), file, indent=2)
        file.write("\n")


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
    started = datetime.datetime.now(datetime.UTC)
    peaks = [matmul_peak_gflops()]
    info = machine()
    print_machine(info, peaks[0])
    threads = DEFAULT_THREADS if args.threads is None else args.threads
    print(f"  model_core: {threads} thread(s) for the passes between the products (--threads)")
    before = None if args.before is None else train_of_tree(args.before)
    workloads = [
        digits_workload(args.digits_epochs),
        *synthetic_workloads(args.rows, args.epochs),
        tutorial_workload(args.tutorial_epochs),
    ]
    results, described = {}, {}
    for w in workloads:
        if w.name not in args.workloads:
            continue
        if results:
            peaks.append(matmul_peak_gflops())
        frameworks = frameworks_for(w, args.threads, args.compare_threads, args.frameworks, before)
        measured = measure(w, args.repeats, frameworks)
        results[w.name] = {m.framework: m for m in measured}
        described[w.name] = describe(w, measured)
        print_workload(w, measured, peaks[0])
    targets = check_targets(results, peaks[0])
    print_targets(targets)
    rss = None if args.no_memory else print_memory(args.rows)
    peaks.append(matmul_peak_gflops())
    warn_if_busy(peaks)
    if args.json:
        document = {
            "started": started.isoformat(timespec="seconds"),
            "arguments": vars(args),
            "machine": info,
            "matmul_peaks_gflops": peaks,
            "workloads": described,
            "targets": [asdict(t) | {"met": t.met} for t in targets],
            "memory": rss,
        }
        write_json(args.json, document)


def describe(w: Workload, measured: list[Measurement]) -> dict:
    """A workload and its measurements, for the JSON output."""
    return {
        "title": w.title,
        "epochs": w.epochs,
        "batch_size": w.batch_size,
        "weights": w.n_weights,
        "frameworks": {m.framework: asdict(m) for m in measured},
    }


if __name__ == "__main__":
    main()
