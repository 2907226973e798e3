"""How uploaded arrays are stored."""

import numpy as np

from service.datasets.ingest import build_dataset
from service.db.npz import npz_to_arrays
from service.vocabulary import Task


def stored_features(x: np.ndarray) -> np.ndarray:
    packed = build_dataset(
        name="d",
        task=Task.CLASSIFICATION,
        source="json",
        x=x,
        y=np.array([0, 1]),
        target_field="targets",
    )
    with packed:
        return npz_to_arrays(packed.npz.read())["X"]


def test_features_exact_in_float32_are_stored_as_float32():
    stored = stored_features(np.array([[0.0, 16.0], [0.5, 3.0]]))
    assert stored.dtype == np.float32
    assert stored.tolist() == [[0.0, 16.0], [0.5, 3.0]]


def test_features_that_need_float64_keep_it():
    stored = stored_features(np.array([[0.1, 1.0], [2.0, 3.0]]))
    assert stored.dtype == np.float64 and stored[0, 0] == 0.1


def test_features_that_need_float64_only_after_the_sampled_rows_keep_it():
    x = np.zeros((1500, 2))
    x[1200, 1] = 0.1
    packed = build_dataset(
        name="d",
        task=Task.REGRESSION,
        source="json",
        x=x,
        y=np.zeros(1500),
        target_field="targets",
    )
    with packed:
        stored = npz_to_arrays(packed.npz.read())["X"]
    assert stored.dtype == np.float64 and stored[1200, 1] == 0.1
