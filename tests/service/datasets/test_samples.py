"""The built-in samples load without scikit-learn and hold exactly scikit-learn's values."""

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split

from service.datasets.samples import SAMPLE_NAMES, Sample, load_sample, split_train_test


@pytest.mark.parametrize(
    ("name", "shape", "labels"),
    [
        ("xor", (4, 2), [0, 1]),
        ("digits", (1797, 64), list(range(10))),
        ("iris", (150, 4), ["setosa", "versicolor", "virginica"]),
    ],
)
def test_shapes_and_labels(name, shape, labels):
    sample = load_sample(name)
    assert isinstance(sample, Sample)
    assert (sample.name, sample.task) == (name, "classification")
    assert sample.X.shape == shape and sample.X.dtype == np.float64
    assert sample.y.shape == (shape[0],)
    assert sorted(set(sample.y.tolist())) == labels
    assert sample.description


def test_every_name_loads():
    assert [load_sample(name).name for name in SAMPLE_NAMES] == list(SAMPLE_NAMES)


def test_xor_is_the_truth_table():
    sample = load_sample("xor")
    np.testing.assert_array_equal(sample.X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(sample.y, [0, 1, 1, 0])


def test_digits_equal_sklearn():
    sample, reference = load_sample("digits"), load_digits()
    np.testing.assert_array_equal(sample.X, reference.data)
    np.testing.assert_array_equal(sample.y, reference.target)
    assert np.issubdtype(sample.y.dtype, np.integer)


def test_iris_equal_sklearn():
    sample, reference = load_sample("iris"), load_iris()
    np.testing.assert_array_equal(sample.X, reference.data)
    np.testing.assert_array_equal(sample.y, reference.target_names[reference.target])


def test_sample_is_frozen():
    sample = load_sample("xor")
    with pytest.raises(AttributeError):
        sample.name = "other"


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown sample 'mnist'; valid names: xor, digits, iris"):
        load_sample("mnist")


@pytest.mark.parametrize(("name", "test_size", "seed"), [("digits", 0.25, 42), ("iris", 0.3, 0)])
def test_split_draws_the_rows_of_sklearn(name, test_size, seed):
    sample = load_sample(name)
    ours = split_train_test(sample.X, sample.y, test_size=test_size, seed=seed)
    theirs = train_test_split(sample.X, sample.y, test_size=test_size, random_state=seed)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_digits_split_holds_out_450_rows():
    sample = load_sample("digits")
    X_train, X_test, y_train, y_test = split_train_test(sample.X, sample.y)
    assert (len(X_train), len(X_test), len(y_train), len(y_test)) == (1347, 450, 1347, 450)
