"""The float64 golden record: fixed runs whose weights and history must not move by one bit.

Optimising the engine (issue 13) must not change what it computes. Each case below trains a small
float64 network from a fixed seed; its final weights and its history are compared with
``data/golden_float64.npz``, recorded before the optimisation started. A change that reorders a
float64 sum may move them by at most 1e-12 relative, and must say so; then, and only then,
re-record with ``python -m tests.model_core.test_golden --write``.

The bits depend on more than model_core: on NumPy's random streams, on the SIMD code NumPy's
ufuncs dispatch to (``exp``, ``tanh``, ``add.reduce``... pick AVX2 or AVX-512 loops by CPU), and
on the BLAS library, its kernel (OpenBLAS picks one by CPU) and its thread count, since each
sums in its own order. The record stores that environment as one key (``environment()``: the
NumPy version, the SIMD baseline and the dispatch targets found, as ``np.show_runtime()`` reports
them, and NumPy's BLAS with its version, kernel and thread count); the runs here pin BLAS to
``BLAS_THREADS`` threads so that the key does not depend on the core count. There is one record
per key (``data/golden_float64*.npz``, each holding its key): where a record has this process's
key, the runs must match it bit for bit; elsewhere they are compared to 1e-9 relative with the
first record (``golden_float64.npz``), and the test says so with a ``GoldenToleranceWarning`` (in
pytest's warnings summary) naming the keys.

The records' keys: an AVX-512 CPU (SIMD found X86_V3, X86_V4, AVX512_ICL) running OpenBLAS's
Haswell kernel on one thread (``golden_float64.npz``, before issue 13), and an AVX2 CPU without
AVX-512 (SIMD found X86_V3) on the same kernel (recorded by the code of 841e8c1, before issue
29's third round, so that its changes are checked bit for bit there). An AVX-512 CPU whose
OpenBLAS picks SkylakeX by itself (the CI machine) checks to 1e-9 only, unless run with
``OPENBLAS_CORETYPE=Haswell``, which reproduces the first record bit for bit there.
``--write`` records this process's key, replacing its record if there is one; if NumPy or
OpenBLAS changes and model_core did not, re-record and say so in the commit.
"""

import argparse
import hashlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl
from sklearn.datasets import load_digits

from model_core import train

RECORDS = Path(__file__).parent / "data"
# The first record, the one a process without a record of its own is compared with.
RECORD = RECORDS / "golden_float64.npz"
HISTORY_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
ENVIRONMENT = "_environment"
LOOSE_RTOL = 1e-9
# One thread sums the same way on every machine; the default (one per core) would make the key,
# and perhaps the bits, depend on the core count.
BLAS_THREADS = 1


class GoldenToleranceWarning(UserWarning):
    """The runs were compared to LOOSE_RTOL, not bit for bit: no record for this environment."""


def environment_key(numpy_version: str, simd: dict, blas_pools: list[dict]) -> str:
    """The key of everything that changes the bits: ``simd`` is NumPy's ``"SIMD Extensions"``
    (``baseline`` and dispatch targets ``found``), ``blas_pools`` is threadpoolctl's
    ``threadpool_info()``, of which only NumPy's BLAS counts."""
    numpy_blas = [
        f"{pool['internal_api']} {pool['version']} {pool.get('architecture')}"
        f" threads={pool['num_threads']}"
        for pool in blas_pools
        if pool["user_api"] == "blas" and "numpy" in pool["filepath"]
    ]
    return (
        f"numpy {numpy_version}, SIMD {' '.join(simd['baseline'])} + {' '.join(simd['found'])}, "
        f"{', '.join(numpy_blas) or 'unknown BLAS'}"
    )


def environment() -> str:
    """This process's key, read as ``np.show_runtime()`` reads it."""
    return environment_key(
        np.__version__,
        np.show_config(mode="dicts")["SIMD Extensions"],
        threadpoolctl.threadpool_info(),
    )


@contextmanager
def pinned_blas_threads() -> Iterator[None]:
    with threadpoolctl.threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        yield


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


def record_paths() -> list[Path]:
    """Every record file, the first record first."""
    return [RECORD, *sorted(set(RECORDS.glob("golden_float64*.npz")) - {RECORD})]


def load_record(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as saved:
        return dict(saved)


def record_path(key: str) -> Path:
    """Where the record of environment ``key`` is written: the first record's file if it is that
    record's key (or there is none yet), else a file named by a hash of the key."""
    if not RECORD.exists() or str(load_record(RECORD)[ENVIRONMENT]) == key:
        return RECORD
    return RECORDS / f"golden_float64.{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"


@pytest.fixture(scope="module")
def records() -> list[dict[str, np.ndarray]]:
    return [load_record(path) for path in record_paths()]


@pytest.fixture(scope="module")
def pinned(records) -> Iterator[tuple[dict[str, np.ndarray], bool]]:
    """Pins the BLAS threads for the module's runs; the record to compare with (this
    environment's, else the first) and whether it is this environment's, warning once when
    not."""
    with pinned_blas_threads():
        current = environment()
        own = [record for record in records if str(record[ENVIRONMENT]) == current]
        if not own:
            keys = "; ".join(str(record[ENVIRONMENT]) for record in records)
            warnings.warn(
                f"golden runs compared to rtol {LOOSE_RTOL}, not bit for bit: no record for "
                f"{current} (the records are of {keys})",
                GoldenToleranceWarning,
                stacklevel=1,
            )
        yield (own or records)[0], bool(own)


def differing(got: np.ndarray, expected: np.ndarray, bit_for_bit: bool) -> np.ndarray:
    """Where ``got`` differs from ``expected``: in any bit, or by more than LOOSE_RTOL relative."""
    if bit_for_bit:
        return ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
    return ~np.isclose(got, expected, rtol=LOOSE_RTOL, atol=0.0, equal_nan=True)


@pytest.mark.parametrize("name", sorted(_cases()))
def test_float64_run_matches_the_golden_record(pinned, name):
    record, bit_for_bit = pinned
    got = _arrays(name, _cases()[name])
    expected = {key: value for key, value in record.items() if key.startswith(f"{name}.")}
    assert sorted(got) == sorted(expected)
    for key, value in got.items():
        assert value.shape == expected[key].shape, key
        differ = differing(value, expected[key], bit_for_bit)
        assert not differ.any(), (
            f"{key}: {int(differ.sum())} of {value.size} values differ, largest relative "
            f"difference {np.nanmax(np.abs(value - expected[key]) / np.abs(expected[key])):.3g}"
            f" ({'bit for bit' if bit_for_bit else f'rtol {LOOSE_RTOL}'}: recorded with "
            f"{record[ENVIRONMENT]}, run with {environment()})"
        )


def test_every_record_covers_every_case_and_keys_its_own_environment(records):
    for record in records:
        assert {key.split(".")[0] for key in record} - {ENVIRONMENT} == set(_cases())
    keys = [str(record[ENVIRONMENT]) for record in records]
    assert len(set(keys)) == len(keys)
    assert [record_path(key) for key in keys] == record_paths()


SIMD_V4 = {"baseline": ["X86_V2"], "found": ["X86_V3", "X86_V4", "AVX512_ICL"]}


def _blas_pool(kernel: str = "Haswell", threads: int = 1, library: str = "numpy.libs") -> dict:
    """One BLAS pool as threadpoolctl's ``threadpool_info()`` lists it."""
    return {
        "user_api": "blas",
        "internal_api": "openblas",
        "version": "0.3.31.188.0",
        "architecture": kernel,
        "num_threads": threads,
        "filepath": f"/venv/site-packages/{library}/libscipy_openblas64_.so",
    }


@pytest.mark.parametrize(
    "numpy_version, simd, blas_pools",
    [
        ("2.4.6", {"baseline": ["X86_V2"], "found": ["X86_V3"]}, [_blas_pool()]),
        ("2.4.6", SIMD_V4, [_blas_pool(threads=2)]),
        ("2.4.6", SIMD_V4, [_blas_pool(kernel="SkylakeX")]),
        ("2.4.7", SIMD_V4, [_blas_pool()]),
        ("2.4.6", SIMD_V4, []),
    ],
    ids=["simd_without_avx512", "two_threads", "kernel", "numpy_version", "no_blas_found"],
)
def test_the_key_changes_with_what_changes_the_bits(numpy_version, simd, blas_pools):
    assert environment_key(numpy_version, simd, blas_pools) != environment_key(
        "2.4.6", SIMD_V4, [_blas_pool()]
    )


def test_the_key_counts_numpys_blas_only():
    scipy_blas = _blas_pool(kernel="SkylakeX", threads=8, library="scipy.libs")
    assert environment_key("2.4.6", SIMD_V4, [_blas_pool(), scipy_blas]) == environment_key(
        "2.4.6", SIMD_V4, [_blas_pool()]
    )


def test_the_runs_pin_numpys_blas_threads():
    with pinned_blas_threads():
        assert environment().endswith(f"threads={BLAS_THREADS}")


def test_bit_for_bit_catches_one_ulp_that_the_tolerance_lets_through():
    expected = np.array([1.0, np.nan, -3.5])
    one_ulp_off = np.nextafter(expected, np.inf)
    assert differing(one_ulp_off, expected, bit_for_bit=True).tolist() == [True, False, True]
    assert not differing(one_ulp_off, expected, bit_for_bit=False).any()
    assert differing(expected * (1 + 1e-8), expected, bit_for_bit=False).tolist() == [
        True,
        False,
        True,
    ]


def write_record() -> Path:
    """Runs every case and writes the record of this environment, replacing it if there is one
    (see the module docstring for when); returns its path."""
    arrays = {}
    with pinned_blas_threads():
        for name, case in _cases().items():
            arrays.update(_arrays(name, case))
        arrays[ENVIRONMENT] = np.array(environment())
    RECORDS.mkdir(exist_ok=True)
    path = record_path(str(arrays[ENVIRONMENT]))
    np.savez_compressed(path, **arrays)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Re-record the float64 golden runs.")
    parser.add_argument("--write", action="store_true", required=True)
    parser.parse_args()
    print(write_record())
