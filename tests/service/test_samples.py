"""The built-in samples load without scikit-learn and hold exactly scikit-learn's values."""

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris

from service.samples import SAMPLE_NAMES, Sample, load_sample


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
