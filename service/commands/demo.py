"""The built-in demo (`backprop demo`, `make run`): the 8x8 digits learned through model_core.

It trains on 75% of the rows, prints one line per epoch and then the accuracy on the 450 rows it
never saw, the split being scikit-learn's ``train_test_split(random_state=42)``.
"""

import argparse

import numpy as np

from model_core import train
from service.datasets.samples import load_sample, split_train_test
from service.settings import Settings

NETWORK = {
    "layers": [{"units": 64, "activation": "relu"}, {"units": 10, "activation": "softmax"}],
    "loss": "cross_entropy",
    "init": "he",
}
TRAINING = {
    "epochs": 40,
    "batch_size": 32,
    "shuffle": True,
    "seed": 42,
    "optimizer": {"name": "adam", "learning_rate": 0.003},
    "validation_split": 0.1,
    "standardize": True,
}


def run_demo() -> float:
    """Train the digits network, print its progress and return its test accuracy."""
    sample = load_sample("digits")
    X_train, X_test, y_train, y_test = split_train_test(sample.X, sample.y, 0.25, seed=42)
    print(f"digits: {len(X_train)} training rows, {len(X_test)} test rows, 64-64-10 relu/softmax")
    result = train(
        X_train,
        y_train,
        network=NETWORK,
        training=TRAINING,
        task="classification",
        on_epoch=print_epoch,
    )
    accuracy = float(np.mean(result.model.predict(X_test) == y_test))
    print(f"test accuracy on {len(X_test)} held-out rows: {accuracy:.4f}")
    return accuracy


def print_epoch(record: dict) -> None:
    """Print one epoch record of model_core as a single plain line (no progress bars)."""
    print(
        f"epoch {record['epoch']:3d}  train_loss {record['train_loss']:.4f}  "
        f"val_loss {record['val_loss']:.4f}  val_accuracy {record['val_accuracy']:.4f}"
    )


def demo(_settings: Settings, _args: argparse.Namespace) -> int:
    """``backprop demo``."""
    run_demo()
    return 0
