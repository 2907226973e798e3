"""Explanations on a wide model run their points in chunks whose buffers stay within
MAX_REQUEST_MEMORY: peak RSS measured in a fresh interpreter, as predictions' are."""

from tests.factories import peak_rss_growth

# Integrated Gradients of 20 rows x 64 steps on a model with a 20,000-unit float64 layer: 1,280
# points, each with that layer's activation and error (2 x 20,000 x 8 bytes): 390 MiB at once.
SETUP = """
import numpy as np
from model_core import Model
from service.serving.explanations import attributions_for
from service.settings import Settings
from service.vocabulary import DataError

layers = [{"units": 20_000, "activation": "relu"}, {"units": 2, "activation": "softmax"}]
rng = np.random.default_rng(0)
weights = [(rng.normal(size=(1, 20_000)), np.zeros(20_000)),
           (rng.normal(size=(20_000, 2)), np.zeros(2))]
model = Model({"layers": layers, "dtype": "float64", "loss": "cross_entropy"}, weights,
              "classification", classes=[0, 1])
x = rng.normal(size=(20, 1))
settings = Settings(max_request_memory=MAX_BYTES)
request = {"method": "integrated_gradients", "steps": 64}
attributions_for(model, x[:1], {"method": "gradient"}, None, settings)  # imports, first calls
"""
CALL = "attributions_for(model, x, request, BASELINE, settings)"
BASELINE_SETUP = """
from service.serving.explanations import Baseline
BASELINE = Baseline(np.zeros((1, 1)), "zeros")
"""
MIB = 1024 * 1024


def peak_rise_mib(max_bytes: int) -> float:
    setup = SETUP.replace("MAX_BYTES", str(max_bytes)) + BASELINE_SETUP
    measured = peak_rss_growth(setup, CALL)
    assert measured["outcome"] == "accepted", measured
    return measured["growth_mb"]


def test_integrated_gradients_on_a_wide_model_stay_within_max_request_memory():
    assert peak_rise_mib(32 * MIB) < 48
    assert peak_rise_mib(1024 * MIB) > 200  # the bound is what made the difference
