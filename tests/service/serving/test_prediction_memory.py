"""Predictions on a wide model work in chunks of rows whose activations stay within
MAX_REQUEST_MEMORY (issue 21, row 5): peak RSS measured in a fresh interpreter."""

import subprocess
import sys
import textwrap

import numpy as np

from model_core import Model
from model_core.network import chunk_rows
from tests.factories import REPOSITORY

MIB = 1024 * 1024

# A 60k-parameter model with a 20,000-unit layer, 2,000 rows (the 98 KB predict of the issue):
# unchunked, 2,000 x 20,002 x 8 bytes = 305 MiB of activations at once.
PEAK_RSS = textwrap.dedent(
    """
    import sys
    import numpy as np
    from model_core import Model
    from service.serving.predictions import prediction_arrays
    from tests.factories import forget_peak_rss, peak_rss_growth_mb

    layers = [{"units": 20_000, "activation": "relu"}, {"units": 2, "activation": "softmax"}]
    rng = np.random.default_rng(0)
    weights = [(rng.normal(size=(1, 20_000)), np.zeros(20_000)),
               (rng.normal(size=(20_000, 2)), np.zeros(2))]
    model = Model({"layers": layers, "dtype": "float64", "loss": "cross_entropy"}, weights,
                  "classification", classes=[0, 1])
    x = rng.normal(size=(2_000, 1))
    prediction_arrays(model, x[:1], 1, "instances")  # every import and first allocation done
    before = forget_peak_rss()
    prediction_arrays(model, x, int(sys.argv[1]), "instances")
    print(peak_rss_growth_mb(before))
    """
)


def peak_rise_mib(max_bytes: int) -> float:
    """How far a prediction within ``max_bytes`` raised the peak RSS of a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(max_bytes)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=REPOSITORY,
    )
    return float(result.stdout)


def test_a_wide_model_predicts_within_max_request_memory():
    assert peak_rise_mib(32 * MIB) < 48
    assert peak_rise_mib(1024 * MIB) > 200  # the bound is what made the difference


def test_the_chunk_is_derived_from_every_layers_units_and_the_dtype():
    weights = [(np.zeros((3, 1000)), np.zeros(1000)), (np.zeros((1000, 24)), np.zeros(24))]
    assert chunk_rows(weights, np.float32, 1024 * 4 * 100) == 100
    assert chunk_rows(weights, np.float64, 1) == 1
    assert chunk_rows(weights, np.float64, None) == chunk_rows(weights, np.float64, 2**40)


def test_chunked_predictions_equal_unchunked_ones():
    rng = np.random.default_rng(1)
    layers = [{"units": 50, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]
    weights = [
        (rng.normal(size=(4, 50)), rng.normal(size=50)),
        (rng.normal(size=(50, 3)), 0 * rng.normal(size=3)),
    ]
    model = Model(
        {"layers": layers, "dtype": "float64", "loss": "cross_entropy"},
        weights,
        "classification",
        classes=["a", "b", "c"],
    )
    x = rng.normal(size=(300, 4))
    chunked = model.forward(x, max_bytes=53 * 8 * 7)  # 7 rows at a time
    np.testing.assert_allclose(chunked, model.forward(x), rtol=1e-12)
