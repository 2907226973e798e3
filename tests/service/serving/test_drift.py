"""Drift against the training data: KS and PSI checked against scipy and the formula by hand,
then whole reports on a synthetic Gaussian data set (two columns shifted: exactly those drift)
and on the digits (64 mostly-zero pixels: in-distribution traffic raises nothing)."""

import numpy as np
import pytest
from scipy.stats import ks_2samp

from model_core import train
from service.datasets.samples import load_sample, split_train_test
from service.serving.drift import (
    PSI_FLOOR,
    REFERENCE_SAMPLE_ROWS,
    Thresholds,
    answer_column,
    bin_shares,
    decile_edges,
    drift_report,
    ks_pvalue,
    ks_statistic,
    psi,
    reference_from_npz,
    reference_profile,
    reference_to_npz,
)

DEFAULTS = Thresholds(psi=0.2, ks=0.1, p=0.01)


@pytest.mark.parametrize(
    ("n1", "n2", "shift"), [(500, 700, 0.0), (10_000, 2_000, 0.2), (300, 300, 1.0)]
)
def test_ks_statistic_and_pvalue_equal_scipy(n1, n2, shift):
    rng = np.random.default_rng(n1 + n2)
    a, b = rng.normal(size=n1), rng.normal(shift, 1.0, size=n2)
    expected = ks_2samp(a, b, method="asymp")
    d = ks_statistic(a, b)
    assert abs(d - expected.statistic) <= 1e-12
    assert abs(ks_pvalue(d, n1, n2) - expected.pvalue) <= 1e-9


def test_ks_statistic_with_ties_equals_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, size=400).astype(float), rng.integers(0, 6, size=250).astype(float)
    assert abs(ks_statistic(a, b) - ks_2samp(a, b, method="asymp").statistic) <= 1e-12


def test_psi_is_the_formula_by_hand_with_the_same_bins_and_floor():
    rng = np.random.default_rng(7)
    # float32 values: drift compares values rounded to float32 (drift.compared)
    reference = rng.normal(size=5000).astype(np.float32)
    live = rng.normal(0.3, 1.2, size=800).astype(np.float32)
    edges = decile_edges(reference)
    assert len(edges) == 11
    # The bins: (-inf, e0], (e0, e1], ..., (e10, +inf).
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])
    expected_shares = [
        np.mean((reference > lo) & (reference <= hi))
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    actual_shares = [
        np.mean((live > lo) & (live <= hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    by_hand = 0.0
    for e, a in zip(expected_shares, actual_shares, strict=True):
        e, a = max(e, 1e-4), max(a, 1e-4)
        by_hand += (a - e) * np.log(a / e)
    shares = bin_shares(reference, edges)
    assert np.allclose(shares, expected_shares, rtol=0, atol=1e-15)
    assert psi(shares, bin_shares(live, edges)) == pytest.approx(by_hand, rel=1e-12)
    assert PSI_FLOOR == 1e-4


def test_a_mostly_zero_feature_gets_fewer_bins_and_an_empty_bin_no_infinity():
    pixel = np.zeros(1000)
    pixel[:150] = np.arange(1, 151) % 16
    edges = decile_edges(pixel)
    assert edges[0] == 0.0 and len(edges) < 11
    live = np.full(200, 20.0)  # every value above the training range: a bin empty in training
    assert np.isfinite(psi(bin_shares(pixel, edges), bin_shares(live, edges)))


def gaussian_classifier(seed: int = 0):
    """A 4-feature Gaussian data set (means 0, 5, -3, 10; scales 1, 2, 0.5, 3), a small model
    trained on it, and the generator of more rows from the same distribution."""
    mean, scale = np.array([0.0, 5.0, -3.0, 10.0]), np.array([1.0, 2.0, 0.5, 3.0])

    def draw(n: int, rng) -> np.ndarray:
        return (mean + scale * rng.normal(size=(n, 4))).astype(np.float32)

    rng = np.random.default_rng(seed)
    x = draw(4000, rng)
    y = ((x[:, 0] + (x[:, 1] - 5) / 2) > 0).astype(int)
    network = {
        "layers": [{"units": 8, "activation": "tanh"}, {"units": 2, "activation": "softmax"}]
    }
    training = {"epochs": 5, "batch_size": 64, "seed": 1}
    model = train(x, y, network, training).model
    return model, x, draw, scale


def report_of(model, reference, x):
    answers = answer_column(model, model.predict(x))
    return drift_report(reference, x.astype(np.float64), answers, ["a", "b", "c", "d"], DEFAULTS)


def test_in_distribution_traffic_drifts_nothing_and_two_shifted_columns_drift_alone():
    model, x_train, draw, scale = gaussian_classifier()
    reference = reference_from_npz(reference_to_npz(reference_profile(model, x_train)))
    live = draw(2000, np.random.default_rng(99))
    steady = report_of(model, reference, live)
    assert [f["drifted"] for f in steady["features"]] == [False] * 4
    assert not steady["drifted"]
    shifted = live.copy()
    shifted[:, 1] += scale[1]
    shifted[:, 3] -= scale[3]
    moved = report_of(model, reference, shifted)
    assert [f["name"] for f in moved["features"] if f["drifted"]] == ["b", "d"]
    assert moved["drifted"]


def test_the_reference_keeps_a_seeded_float32_sample_of_at_most_ten_thousand_rows():
    model, x_train, draw, _ = gaussian_classifier()
    big = np.concatenate([x_train, draw(8000, np.random.default_rng(5))])
    first, second = reference_profile(model, big), reference_profile(model, big)
    sample = np.column_stack([p.sample for p in first.features])
    assert sample.shape == (REFERENCE_SAMPLE_ROWS, 4) and sample.dtype == np.float32
    assert np.array_equal(sample, np.column_stack([p.sample for p in second.features]))
    assert len(first.answers.sample) == REFERENCE_SAMPLE_ROWS
    # the answers' bins: one per class, the shares of the model's predictions on every row
    assert first.answers.shares == pytest.approx(
        np.bincount(answer_column(model, model.predict(big)).astype(int), minlength=2) / len(big)
    )


def test_digits_in_distribution_traffic_raises_no_drift():
    sample = load_sample("digits")
    x_train, x_test, y_train, _ = split_train_test(sample.X, sample.y, test_size=0.25, seed=42)
    network = {
        "layers": [{"units": 32, "activation": "relu"}, {"units": 10, "activation": "softmax"}]
    }
    model = train(x_train, y_train, network, {"epochs": 5, "batch_size": 32, "seed": 1}).model
    reference = reference_profile(model, x_train)
    answers = answer_column(model, model.predict(x_test))
    names = [f"pixel_{i}" for i in range(64)]
    report = drift_report(reference, x_test.astype(np.float64), answers, names, DEFAULTS)
    assert [f["name"] for f in report["features"] if f["drifted"]] == []
    assert not report["predictions"]["drifted"]
