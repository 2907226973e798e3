"""Peak RSS of model_core training on workload (b), run alone in a fresh process.

``python -m bench.memory --rows 60000 --epochs 1`` prints one JSON object (bytes):
``interpreter`` (peak RSS after imports), ``before_training`` (after the data exists), ``peak``
(after training), ``dataset`` (X and y) and ``weights``. The engine runs it in a subprocess
because a peak only ever grows: other frameworks in the same process would blur it.
"""

import argparse
import json
import resource

import numpy as np

from bench.workloads import model_core_specs, synthetic_workloads
from model_core import train


def max_rss_bytes() -> int:
    """The process's peak resident set size so far, in bytes.

    On Linux this is VmHWM of /proc/self/status: getrusage's ru_maxrss would start at the peak of
    the parent process (the kernel carries it over through fork and exec), which is the engine
    with PyTorch and all the data loaded. Elsewhere ru_maxrss (bytes on macOS) is all there is.
    """
    try:
        with open("/proc/self/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        return kib * 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(rows: int, epochs: int) -> dict[str, int]:
    """Train model_core on (b) and return the RSS figures in bytes."""
    # The first matmul makes OpenBLAS allocate its per-thread buffers; they belong to the baseline.
    np.ones((512, 512), np.float32) @ np.ones((512, 512), np.float32)
    interpreter = max_rss_bytes()
    workload = synthetic_workloads(rows, epochs)[0]
    before_training = max_rss_bytes()
    network, training = model_core_specs(workload)
    train(workload.X, workload.y, network=network, training=training, task="classification")
    return {
        "interpreter": interpreter,
        "before_training": before_training,
        "peak": max_rss_bytes(),
        "dataset": workload.X.nbytes + workload.y.nbytes,
        "weights": 4 * sum(W.size + b.size for W, b in workload.initial_weights),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.rows, args.epochs)))


if __name__ == "__main__":
    main()
