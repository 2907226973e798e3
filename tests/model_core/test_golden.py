"""The float64 golden record: fixed runs whose weights and history must not move by one bit.

Optimising the engine (issue 13) must not change what it computes. Each case below trains a small
float64 network from a fixed seed; its final weights and its history are compared bit for bit
with ``data/golden_float64.npz``, recorded before the optimisation started. A change that
reorders a float64 sum may move them by at most 1e-12 relative, and must say so; then, and only
then, re-record with ``python -m tests.model_core.test_golden --write``.

The record depends on NumPy's random streams and on the BLAS kernel as well as on model_core
(OpenBLAS picks its kernel by CPU, and kernels sum in different orders). It stores the NumPy
version and NumPy's BLAS kernel it was made with; elsewhere the runs are compared to 1e-9
relative instead of bit for bit. If NumPy or OpenBLAS changes and model_core did not, re-record
and say so in the commit.
"""

import argparse
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl
from sklearn.datasets import load_digits

from model_core import train

RECORD = Path(__file__).parent / "data" / "golden_float64.npz"
HISTORY_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
ENVIRONMENT = "_environment"
LOOSE_RTOL = 1e-9


def environment() -> str:
    """NumPy's version and the BLAS library and kernel NumPy multiplies with."""
    numpy_blas = [
        f"{pool['internal_api']} {pool['version']} {pool.get('architecture')}"
        for pool in threadpoolctl.threadpool_info()
        if pool["user_api"] == "blas" and "numpy" in pool["filepath"]
    ]
    return f"numpy {np.__version__}, {', '.join(numpy_blas) or 'unknown BLAS'}"


def _digits(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return x[:n_rows] / 16.0, y[:n_rows]


def _synthetic(n_rows: int, n_features: int, n_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian rows and a random linear teacher's outputs (n_rows, n_targets)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n_rows, n_features))
    return x, x @ rng.standard_normal((n_features, n_targets))


def _network(*layers: tuple[int, str], **fields) -> dict:
    """A float64 network spec of (units, activation) layers and other network fields."""
    return {
        "layers": [{"units": units, "activation": activation} for units, activation in layers],
        "dtype": "float64",
        **fields,
    }


def _cases() -> dict[str, dict]:
    """Name -> arguments of ``train``: the shapes of the benchmark's workloads, made small, and
    every optimizer path (plain SGD, momentum, Nesterov with decay, Adam), L2, early stopping,
    validation, full batches, batch 1, every loss and activation."""
    digits_x, digits_y = _digits(300)
    x, targets = _synthetic(160, 24, 3)
    binary = (targets[:, 0] > 0).astype(int)
    classes = np.argmax(targets, axis=1)
    return {
        # (a): 64 -> 32 -> 10 ReLU, softmax cross-entropy, SGD with momentum, batch 32
        "a_momentum": dict(
            X=digits_x,
            y=digits_y,
            network=_network((32, "relu"), (10, "softmax")),
            training={
                "epochs": 4,
                "batch_size": 32,
                "seed": 1,
                "standardize": False,
                "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
            },
        ),
        # (b): two ReLU layers, Nesterov with learning-rate decay, L2, a ragged last batch
        "b_nesterov_l2": dict(
            X=x,
            y=classes,
            network=_network((20, "relu"), (12, "relu"), (3, "softmax")),
            training={
                "epochs": 5,
                "batch_size": 24,
                "seed": 2,
                "l2": 1e-3,
                "optimizer": {
                    "name": "sgd",
                    "learning_rate": 0.1,
                    "momentum": 0.8,
                    "nesterov": True,
                    "decay": 0.1,
                },
            },
        ),
        # Adam, L2, validation split, early stopping that restores the best weights
        "adam_early_stopping": dict(
            X=digits_x,
            y=digits_y,
            network=_network((24, "tanh"), (16, "leaky_relu"), (10, "softmax")),
            training={
                "epochs": 30,
                "batch_size": 16,
                "seed": 3,
                "l2": 1e-4,
                "validation_split": 0.25,
                "early_stopping": {"patience": 2, "min_delta": 0.0, "restore_best": True},
                "optimizer": {"name": "adam", "learning_rate": 0.01, "decay": 0.05},
            },
        ),
        # (d): the tutorial's sigmoid network with squared error and plain SGD, one row per step
        "d_batch1_sse": dict(
            X=digits_x[:120],
            y=digits_y[:120],
            network=_network(
                (32, "sigmoid"), (16, "sigmoid"), (10, "sigmoid"), loss="sse", init="normal"
            ),
            training={
                "epochs": 2,
                "batch_size": 1,
                "seed": 4,
                "standardize": False,
                "optimizer": {"name": "sgd", "learning_rate": 0.1},
            },
        ),
        # a single sigmoid output with binary cross-entropy, full batch, no shuffling
        "binary_full_batch": dict(
            X=x,
            y=binary,
            network=_network(
                (8, "sigmoid"), (1, "sigmoid"), loss="binary_cross_entropy", init="xavier"
            ),
            training={
                "epochs": 6,
                "batch_size": "full",
                "shuffle": False,
                "seed": 5,
                "optimizer": {"name": "sgd", "learning_rate": 0.5, "momentum": 0.5},
            },
        ),
        # regression with several targets, mean squared error, Adam, early stopping on train loss
        "regression_mse": dict(
            X=x,
            y=targets,
            task="regression",
            network=_network((16, "tanh"), (3, "linear"), loss="mse"),
            training={
                "epochs": 8,
                "batch_size": 10,
                "seed": 6,
                "early_stopping": {"patience": 3, "restore_best": False},
                "optimizer": {"name": "adam", "learning_rate": 0.01},
            },
        ),
    }


def _arrays(name: str, case: dict) -> dict[str, np.ndarray]:
    """What a run records: its final weights, its history (None as NaN) and how it ended."""
    result = train(**case)
    arrays = {}
    for i, (w, b) in enumerate(result.model.weights):
        assert w.dtype == np.float64
        arrays[f"{name}.W{i}"], arrays[f"{name}.b{i}"] = w, b
    arrays[f"{name}.history"] = np.array(
        [[np.nan if r[key] is None else r[key] for key in HISTORY_KEYS] for r in result.history]
    )
    arrays[f"{name}.ending"] = np.array([result.best_epoch, result.stopped_early])
    return arrays


@pytest.fixture(scope="module")
def record() -> dict[str, np.ndarray]:
    with np.load(RECORD) as saved:
        return dict(saved)


@pytest.mark.parametrize("name", sorted(_cases()))
def test_float64_run_matches_the_golden_record_bit_for_bit(record, name):
    got = _arrays(name, _cases()[name])
    expected = {key: value for key, value in record.items() if key.startswith(f"{name}.")}
    assert sorted(got) == sorted(expected)
    same_environment = str(record[ENVIRONMENT]) == environment()
    for key, value in got.items():
        assert value.shape == expected[key].shape, key
        if same_environment:
            differ = ~((value == expected[key]) | (np.isnan(value) & np.isnan(expected[key])))
        else:
            differ = ~np.isclose(value, expected[key], rtol=LOOSE_RTOL, atol=0.0, equal_nan=True)
        assert not differ.any(), (
            f"{key}: {int(differ.sum())} of {value.size} values differ, largest relative "
            f"difference {np.nanmax(np.abs(value - expected[key]) / np.abs(expected[key])):.3g}"
            f" ({'bit for bit' if same_environment else f'rtol {LOOSE_RTOL}'}: recorded with "
            f"{record[ENVIRONMENT]}, run with {environment()})"
        )


def test_the_record_covers_every_case(record):
    assert {key.split(".")[0] for key in record} - {ENVIRONMENT} == set(_cases())


def write_record() -> None:
    """Runs every case and overwrites the record (see the module docstring for when)."""
    arrays = {}
    for name, case in _cases().items():
        arrays.update(_arrays(name, case))
    arrays[ENVIRONMENT] = np.array(environment())
    RECORD.parent.mkdir(exist_ok=True)
    np.savez_compressed(RECORD, **arrays)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Re-record the float64 golden runs.")
    parser.add_argument("--write", action="store_true", required=True)
    parser.parse_args()
    write_record()
