"""The matrix products alone: the ceiling on any NumPy implementation of a workload.

Per batch, 3 forward, 3 weight-gradient and 2 error products (the input layer's error is never
needed), at the workload's shapes and batch size, in float32, into preallocated arrays; nothing
else. ``bench.engine`` times it round-robin with the frameworks, as a column of every workload.
"""

import math

import numpy as np

from bench.workloads import Workload


def prepare_products(w: Workload):
    """``run() -> nan``: the products of ``w.epochs`` epochs of ``w`` (no loss to report)."""
    sizes = [w.X.shape[1], *w.hidden, w.initial_weights[-1][0].shape[1]]
    weights = [W.astype(np.float32) for W, _ in w.initial_weights]
    n = w.batch_size
    outputs = [w.X[:n]] + [np.empty((n, units), np.float32) for units in sizes[1:]]
    deltas = [np.empty((n, units), np.float32) for units in sizes[1:]]
    grads = [np.empty_like(W) for W in weights]
    n_batches = w.epochs * -(-len(w.X) // n)

    def run() -> float:
        for _ in range(n_batches):
            for i, W in enumerate(weights):
                np.matmul(outputs[i], W, out=outputs[i + 1])
            for i in range(len(weights) - 1, -1, -1):
                np.matmul(outputs[i].T, deltas[i], out=grads[i])
                if i:
                    np.matmul(deltas[i], weights[i].T, out=deltas[i - 1])
        return math.nan

    return run
