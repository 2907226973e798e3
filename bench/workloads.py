"""The benchmark's workloads: data, layer sizes, optimizer settings and the shared initial weights.

Every framework trains the same network from the same initial weights on the same float32 rows,
with the same batch size, epochs and SGD-with-momentum settings; only the shuffling order differs.
"""

from dataclasses import dataclass

import numpy as np

from service.datasets.samples import load_sample

N_CLASSES = 10


@dataclass(frozen=True)
class Workload:
    """One benchmark case.

    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,), int64 class labels 0..9
    initial_weights : [(W, b), ...] float64, W shape (inputs, units), shared by every framework
    """

    name: str
    title: str
    X: np.ndarray
    y: np.ndarray
    hidden: tuple[int, ...]
    batch_size: int
    epochs: int
    learning_rate: float
    momentum: float
    initial_weights: list[tuple[np.ndarray, np.ndarray]]
    activation: str = "relu"
    output: str = "softmax"
    loss: str = "cross_entropy"

    @property
    def n_weights(self) -> int:
        """Number of entries of the weight matrices (biases left out, as in 6 x weights FLOPs)."""
        return sum(W.size for W, _ in self.initial_weights)

    @property
    def samples(self) -> int:
        """Samples processed by one training run: rows x epochs."""
        return len(self.X) * self.epochs


def he_weights(layer_sizes: list[int], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-normal weights and zero biases for layer sizes [inputs, hidden..., outputs]."""
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in), np.zeros(fan_out))
        for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:], strict=True)
    ]


def synthetic_data(n_rows: int, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal float32 rows labelled by a random linear teacher (a learnable task).

    The rows are drawn straight into one float32 array and labelled a chunk at a time (one
    (n_rows x 784) @ (784 x 10) product makes OpenBLAS take a third of X in scratch memory), so
    the memory benchmark's peak RSS measures training, not data generation.
    """
    rng = np.random.default_rng(seed)
    X = np.empty((n_rows, n_features), dtype=np.float32)
    rng.standard_normal(dtype=np.float32, out=X)
    teacher = rng.standard_normal((n_features, N_CLASSES), dtype=np.float32)
    chunks = range(0, n_rows, 4096)
    y = np.concatenate([np.argmax(X[start : start + 4096] @ teacher, axis=1) for start in chunks])
    return X, y.astype(np.int64)


def digits_workload(epochs: int) -> Workload:
    """(a) sklearn's 8x8 digits, 64-64-10, batch 32; pixels scaled to [0, 1] once for everyone."""
    sample = load_sample("digits")
    X = (sample.X / 16.0).astype(np.float32)
    return Workload(
        "a",
        "digits 1797x64 -> 64 -> 10, batch 32",
        X,
        sample.y.astype(np.int64),
        (64,),
        batch_size=32,
        epochs=epochs,
        learning_rate=0.01,
        momentum=0.9,
        initial_weights=he_weights([64, 64, N_CLASSES], seed=0),
    )


def synthetic_workloads(n_rows: int, epochs: int) -> list[Workload]:
    """(b) and (c): synthetic n_rows x 784 -> 256 -> 128 -> 10 at batch 64 and batch 1024."""
    X, y = synthetic_data(n_rows, 784, seed=0)
    weights = he_weights([784, 256, 128, N_CLASSES], seed=1)
    return [
        Workload(
            name,
            f"synthetic {n_rows}x784 -> 256 -> 128 -> 10, batch {batch_size}",
            X,
            y,
            (256, 128),
            batch_size=batch_size,
            epochs=epochs,
            learning_rate=0.01,
            momentum=0.9,
            initial_weights=weights,
        )
        for name, batch_size in (("b", 64), ("c", 1024))
    ]


def tutorial_workload(epochs: int) -> Workload:
    """(d) the tutorial's digits network: 64 -> 32 -> 16 -> 10, sigmoid everywhere, squared
    error, plain SGD with learning rate 0.1, one row at a time, on the 1,347 training rows of
    the 75/25 split whose 450 held-out rows the tutorial scores."""
    sample = load_sample("digits")
    rows = np.random.default_rng(42).permutation(len(sample.X))[:1347]
    return Workload(
        "d",
        "digits 1347x64 -> 32 -> 16 -> 10 sigmoid, squared error, batch 1",
        (sample.X[rows] / 16.0).astype(np.float32),
        sample.y[rows].astype(np.int64),
        (32, 16),
        batch_size=1,
        epochs=epochs,
        learning_rate=0.1,
        momentum=0.0,
        initial_weights=he_weights([64, 32, 16, N_CLASSES], seed=2),
        activation="sigmoid",
        output="sigmoid",
        loss="sse",
    )


def model_core_specs(w: Workload) -> tuple[dict, dict]:
    """model_core's network and training specs for w: float32, no standardisation, no validation.

    Standardisation is off because the other frameworks do not standardise either, so all of them
    do the same work on the same rows.
    """
    network = {
        "layers": [{"units": units, "activation": w.activation} for units in w.hidden]
        + [{"units": N_CLASSES, "activation": w.output}],
        "loss": w.loss,
        "dtype": "float32",
        "initial_weights": [{"W": W, "b": b} for W, b in w.initial_weights],
    }
    training = {
        "epochs": w.epochs,
        "batch_size": w.batch_size,
        "shuffle": True,
        "seed": 0,
        "optimizer": {"name": "sgd", "learning_rate": w.learning_rate, "momentum": w.momentum},
        "l2": 0.0,
        "validation_split": 0.0,
        "early_stopping": None,
        "standardize": False,
    }
    return network, training
