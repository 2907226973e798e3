"""Built-in sample data sets, shipped as small gzipped CSV files (origin and licences: LICENSE).

Only numpy and the standard library are used, so the runtime needs no scikit-learn::

    sample = load_sample("digits")
    sample.X.shape, sample.y[:3]      # (1797, 64), array([0, 1, 2])
"""

import csv
import gzip
import io
from dataclasses import dataclass
from importlib import resources

import numpy as np

SAMPLE_NAMES = ("xor", "digits", "iris")

_DESCRIPTIONS = {
    "xor": "Exclusive or: the 4-row truth table, 2 binary inputs, labels 0/1.",
    "digits": (
        "Optical recognition of handwritten digits (UCI ML): 1797 8x8 images, "
        "64 pixel counts in 0..16, labels 0-9."
    ),
    "iris": (
        "Fisher's iris plants: 150 flowers, sepal and petal length and width in cm, "
        "labels setosa, versicolor, virginica."
    ),
}

# How the "label" column is read: integer classes stay integers, names stay strings.
_LABEL_TYPES = {"xor": int, "digits": int, "iris": str}


@dataclass(frozen=True)
class Sample:
    """A built-in data set.

    X : ndarray of shape (n_samples, n_features), float64
    y : ndarray of shape (n_samples,), the class labels (int64 or str)
    """

    name: str
    task: str
    X: np.ndarray
    y: np.ndarray
    description: str


def load_sample(name: str) -> Sample:
    """Read the sample data set ``name`` (one of ``SAMPLE_NAMES``) from the package's files."""
    if name not in SAMPLE_NAMES:
        raise ValueError(f"unknown sample {name!r}; valid names: {', '.join(SAMPLE_NAMES)}")
    header, rows = _read_csv(f"{name}.csv.gz")
    if header[-1] != "label":
        raise ValueError(f"{name}.csv.gz: the last column must be 'label', not {header[-1]!r}")
    X = np.array([row[:-1] for row in rows], dtype=np.float64)
    y = np.array([_LABEL_TYPES[name](row[-1]) for row in rows])
    return Sample(name, "classification", X, y, _DESCRIPTIONS[name])


def _read_csv(filename: str) -> tuple[list[str], list[list[str]]]:
    """Return the header row and the data rows of one gzipped CSV file of this package."""
    data = resources.files(__name__).joinpath(filename).read_bytes()
    with io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(data)), encoding="utf-8") as text:
        header, *rows = csv.reader(text)
    return header, rows


def split_train_test(
    X: np.ndarray, y: np.ndarray, test_size: float = 0.25, seed: int = 42
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split rows at random into (X_train, X_test, y_train, y_test), not stratified.

    Draws the same rows as scikit-learn's ``train_test_split(X, y, test_size=test_size,
    random_state=seed)``, so figures quoted against that split are reproduced without sklearn:
    the test rows are the first ceil(test_size * n) of ``RandomState(seed).permutation(n)``.
    """
    n_test = int(np.ceil(test_size * len(X)))
    order = np.random.RandomState(seed).permutation(len(X))
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]
