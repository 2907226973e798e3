"""One runner per framework: ``prepare(workload)`` returns ``train() -> last epoch loss``.

``prepare`` does what a user would do once before training (convert the data to the framework's
types); the returned ``train`` starts from the workload's initial weights every time it is called,
so the engine can time repeated runs of exactly the same work.
"""

import importlib
import os
import sys
import warnings
from collections.abc import Callable

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from bench.products import prepare_products
from bench.textbook import train_per_sample, train_textbook
from bench.workloads import Workload, model_core_specs
from model_core import train
from model_core.parallel import DEFAULT_THREADS

Train = Callable[[], float]


def model_core_runner(
    threads: int | None = DEFAULT_THREADS, train_function: Callable = train
) -> Callable[[Workload], Train]:
    """model_core in float32, no standardisation, so it does the same work as the others, its
    elementwise passes on ``threads`` threads (model_core/parallel.py; None: not passed, the
    default of ``train_function``, which may be another tree's, see :func:`train_of_tree`)."""
    options = {} if threads is None else {"threads": threads}

    def prepare(w: Workload) -> Train:
        network, training = model_core_specs(w)

        def run() -> float:
            result = train_function(w.X, w.y, network, training, "classification", **options)
            return result.history[-1]["train_loss"]

        return run

    return prepare


def train_of_tree(tree: str) -> Callable:
    """``model_core.train`` of another checkout: ``tree`` is the directory holding its
    ``model_core`` (e.g. made by ``git worktree add /tmp/before main``). Its modules are imported
    under their own names, then set aside and this tree's put back, so both run in one process
    (model_core imports nothing inside its functions, so each keeps its own modules)."""

    def ours(name: str) -> bool:
        return name == "model_core" or name.startswith("model_core.")

    kept = {name: module for name, module in sys.modules.items() if ours(name)}
    for name in kept:
        del sys.modules[name]
    sys.path.insert(0, tree)
    try:
        other = importlib.import_module("model_core")
        if not other.__file__.startswith(os.path.abspath(tree)):
            raise SystemExit(f"--before {tree}: no model_core there (found {other.__file__})")
        return other.train
    finally:
        sys.path.remove(tree)
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(kept)


prepare_model_core = model_core_runner()


class MLPWithInitialWeights(MLPClassifier):
    """MLPClassifier that starts from ``initial_weights`` (sklearn has no parameter for that)."""

    initial_weights: list[tuple[np.ndarray, np.ndarray]]

    def _initialize(self, y, layer_units, dtype):
        super()._initialize(y, layer_units, dtype)
        self.coefs_ = [W.astype(dtype) for W, _ in self.initial_weights]
        self.intercepts_ = [b.astype(dtype) for _, b in self.initial_weights]


def sklearn_classifier(w: Workload) -> MLPWithInitialWeights:
    """scikit-learn's MLP set up as plain SGD with momentum: no L2, no early stop, constant rate."""
    classifier = MLPWithInitialWeights(
        hidden_layer_sizes=w.hidden,
        activation="relu",
        solver="sgd",
        alpha=0.0,
        batch_size=w.batch_size,
        learning_rate="constant",
        learning_rate_init=w.learning_rate,
        momentum=w.momentum,
        nesterovs_momentum=False,
        max_iter=w.epochs,
        shuffle=True,
        random_state=0,
        tol=0.0,
        n_iter_no_change=w.epochs + 1,
    )
    classifier.initial_weights = w.initial_weights
    return classifier


def sklearn_runner(dtype: type) -> Callable[[Workload], Train]:
    """scikit-learn's MLPClassifier on rows of ``dtype`` (float64 is what it uses by default)."""

    def prepare(w: Workload) -> Train:
        X = w.X.astype(dtype)

        def run() -> float:
            classifier = sklearn_classifier(w)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                classifier.fit(X, w.y)
            return classifier.loss_curve_[-1]

        return run

    return prepare


def torch_network(w: Workload, dtype: torch.dtype) -> torch.nn.Sequential:
    """ReLU layers and a linear output (CrossEntropyLoss applies the softmax), from w's weights."""
    layers: list[torch.nn.Module] = []
    for W, b in w.initial_weights:
        linear = torch.nn.Linear(*W.shape, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def prepare_torch(w: Workload) -> Train:
    """PyTorch on the CPU, float32, with all cores, shuffling indices each epoch."""
    torch.set_num_threads(os.cpu_count() or 1)
    X_t, y_t = torch.from_numpy(w.X), torch.from_numpy(w.y)

    def run() -> float:
        generator = torch.Generator().manual_seed(0)
        network = torch_network(w, torch.float32)
        optimizer = torch.optim.SGD(network.parameters(), lr=w.learning_rate, momentum=w.momentum)
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(w.epochs):
            order = torch.randperm(len(X_t), generator=generator)
            epoch_loss = 0.0
            for batch in order.split(w.batch_size):
                loss = loss_fn(network(X_t[batch]), y_t[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                epoch_loss += loss.item() * len(batch)
        return epoch_loss / len(X_t)

    return run


def prepare_textbook(w: Workload) -> Train:
    """The textbook NumPy loop in float32."""

    def run() -> float:
        weights = [(W.astype(np.float32), b.astype(np.float32)) for W, b in w.initial_weights]
        return train_textbook(
            w.X, w.y, weights, w.epochs, w.batch_size, w.learning_rate, w.momentum
        )

    return run


def prepare_per_sample(w: Workload) -> Train:
    """The tutorial's per-sample NumPy loop in float32 (workload (d))."""

    def run() -> float:
        weights = [(W.astype(np.float32), b.astype(np.float32)) for W, b in w.initial_weights]
        return train_per_sample(w.X, w.y, weights, w.epochs, w.learning_rate)

    return run


FRAMEWORKS: dict[str, Callable[[Workload], Train]] = {
    "model_core": prepare_model_core,
    "sklearn float64": sklearn_runner(np.float64),
    "sklearn float32": sklearn_runner(np.float32),
    "pytorch": prepare_torch,
    "textbook numpy": prepare_textbook,
    "products alone": prepare_products,
}
# Batch 1 (workload (d)): the tutorial's loop is the yardstick; the others add nothing there.
PER_SAMPLE_FRAMEWORKS: dict[str, Callable[[Workload], Train]] = {
    "model_core": prepare_model_core,
    "per-sample numpy": prepare_per_sample,
    "products alone": prepare_products,
}
