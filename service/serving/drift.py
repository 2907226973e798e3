"""Drift against the training data: the reference profile a model keeps from its training rows,
and how far the inputs (and answers) of a window of live traffic have moved from it.

Per feature, two figures:

* the population stability index over the reference's bins, ``sum((a - e) * ln(a / e))`` with
  ``e`` the training rows' share of a bin and ``a`` the window's, each floored at ``PSI_FLOOR``
  so that an empty bin never takes a logarithm of 0. The bins are cut at the unique decile edges
  of the training rows ``u_0 < ... < u_m``: ``(-inf, u_0], (u_0, u_1], ..., (u_m, +inf)``, so a
  feature with many tied values (a digits pixel that is mostly 0) gets fewer bins, its ties in
  one, and values beyond the training range a bin of their own;
* the two-sample Kolmogorov-Smirnov statistic D against the reference's seeded sample of the
  training rows, and its asymptotic p-value (scipy's ``kstwo``, as ``ks_2samp(...,
  method="asymp")`` computes it).

The same two for the model's answers: the predicted class (bins: one per class) or the first
predicted value (bins: deciles, as a feature's).
"""

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_core import Model

DECILES = np.linspace(0.0, 1.0, 11)
PSI_FLOOR = 1e-4
# At most this many training rows are kept for the Kolmogorov-Smirnov tests (float32).
REFERENCE_SAMPLE_ROWS = 10_000
REFERENCE_SEED = 0


def compared(values) -> np.ndarray:
    """``values`` as drift compares them: rounded to float32 (the reference sample's dtype),
    held in float64. Training rows and live rows thus bin alike whatever dtype each came in
    (5.1 parsed from JSON and 5.1 from a float32 tensor fall on the same side of an edge)."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def decile_edges(values: np.ndarray) -> np.ndarray:
    """The unique decile edges of ``values`` (n,), float64."""
    return np.unique(np.quantile(values.astype(np.float64), DECILES))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many of ``values`` (n,) fall in each of the ``len(edges) + 1`` bins that ``edges``
    cut (right-closed: a value equal to an edge falls in the bin that edge closes)."""
    bins = np.searchsorted(edges, compared(values), side="left")
    return np.bincount(bins, minlength=len(edges) + 1)


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The share of ``values`` (n,) in each bin of :func:`bin_counts`."""
    return bin_counts(values, edges) / len(values)


def class_edges(n_classes: int) -> np.ndarray:
    """Edges that give each class index its own bin (and none below or above them a share)."""
    return np.arange(n_classes - 1, dtype=np.float64)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of shares ``actual`` against ``expected`` (same bins),
    each floored at ``PSI_FLOOR``."""
    e = np.maximum(expected, PSI_FLOOR)
    a = np.maximum(actual, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(sample: np.ndarray, other: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov D: the largest distance between the empirical CDFs."""
    sample, other = np.sort(sample), np.sort(other)
    pooled = np.concatenate([sample, other])
    cdf_sample = np.searchsorted(sample, pooled, side="right") / len(sample)
    cdf_other = np.searchsorted(other, pooled, side="right") / len(other)
    return float(np.max(np.abs(cdf_sample - cdf_other)))


def ks_pvalue(d: float, n1: int, n2: int) -> float:
    """The asymptotic two-sided p-value of D for samples of ``n1`` and ``n2`` values."""
    # SciPy is imported by the first drift check, not at start-up: an API process that only
    # predicts never holds its modules and objects (its full collections walk fewer).
    from scipy.stats import kstwo

    effective = np.round(n1 * n2 / (n1 + n2))
    return float(np.clip(kstwo.sf(d, effective), 0.0, 1.0))


@dataclass(frozen=True)
class Profile:
    """One column's reference: its bin edges and shares, and a sample of its values."""

    edges: np.ndarray
    shares: np.ndarray
    sample: np.ndarray


@dataclass(frozen=True)
class Reference:
    """A model's reference profile: one ``Profile`` per feature, and one of its answers
    (class indices, or the first predicted value)."""

    features: list[Profile]
    answers: Profile


def answer_column(model: Model, predictions: np.ndarray) -> np.ndarray:
    """What drift compares of a model's answers (n,): the class index of each predicted label,
    or the first predicted value."""
    if model.task == "classification":
        index = {label: i for i, label in enumerate(np.asarray(model.classes).tolist())}
        return np.array([index[label] for label in predictions.tolist()], dtype=np.float64)
    return predictions.reshape(len(predictions), -1)[:, 0].astype(np.float64)


def answer_profile(model: Model, answers: np.ndarray) -> Profile:
    edges = class_edges(len(model.classes)) if model.task == "classification" else None
    return column_profile(answers, edges)


def column_profile(values: np.ndarray, edges: np.ndarray | None = None) -> Profile:
    edges = decile_edges(values) if edges is None else edges
    return Profile(edges, bin_shares(values, edges), values.astype(np.float32))


def reference_profile(model: Model, x_train: np.ndarray, max_bytes: int | None = None) -> Reference:
    """The reference of a model trained on raw rows ``x_train`` (n, n_features): bins from
    every row; the sample (the KS tests' side) of at most ``REFERENCE_SAMPLE_ROWS`` rows drawn
    without replacement with a fixed seed; the answers' profile from every row's answer."""
    rng = np.random.default_rng(REFERENCE_SEED)
    n = len(x_train)
    picked = np.sort(rng.choice(n, size=min(n, REFERENCE_SAMPLE_ROWS), replace=False))
    features = [column_profile(column) for column in compared(x_train).T]
    answers = answer_profile(model, answer_column(model, model.predict(x_train, max_bytes)))
    return Reference([sampled(p, picked) for p in features], sampled(answers, picked))


def sampled(profile: Profile, picked: np.ndarray) -> Profile:
    """``profile`` with only the ``picked`` rows of its sample."""
    return Profile(profile.edges, profile.shares, profile.sample[picked])


def reference_to_npz(reference: Reference) -> bytes:
    """The reference as ``.npz`` members (no pickle): ``edges``, ``shares`` (every feature's,
    concatenated) with ``n_edges`` per feature, ``sample`` (rows, n_features) float32, and
    ``answer_edges``, ``answer_shares``, ``answer_sample``."""
    features = reference.features
    arrays = {
        "n_edges": np.array([len(p.edges) for p in features], dtype=np.int64),
        "edges": np.concatenate([p.edges for p in features]),
        "shares": np.concatenate([p.shares for p in features]),
        "sample": np.column_stack([p.sample for p in features]).astype(np.float32),
        "answer_edges": reference.answers.edges,
        "answer_shares": reference.answers.shares,
        "answer_sample": reference.answers.sample,
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def reference_from_npz(data: bytes) -> Reference:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        n_edges = arrays["n_edges"]
        edges = np.split(arrays["edges"], np.cumsum(n_edges)[:-1])
        shares = np.split(arrays["shares"], np.cumsum(n_edges + 1)[:-1])
        sample = arrays["sample"]
        features = [
            Profile(e, s, sample[:, i]) for i, (e, s) in enumerate(zip(edges, shares, strict=True))
        ]
        answers = Profile(arrays["answer_edges"], arrays["answer_shares"], arrays["answer_sample"])
    return Reference(features, answers)


@dataclass(frozen=True)
class Thresholds:
    """When a column counts as drifted (DRIFT_PSI, DRIFT_KS, DRIFT_P: service/settings.py)."""

    psi: float
    ks: float
    p: float


def column_drift(
    profile: Profile, live: np.ndarray, thresholds: Thresholds, n_columns: int
) -> dict[str, Any]:
    """``{"psi", "ks", "p_value", "drifted"}`` of the window's values ``live`` (n,) against
    ``profile``, one of ``n_columns`` tested together (the Bonferroni correction of p)."""
    value = psi(profile.shares, bin_shares(live, profile.edges))
    d = ks_statistic(profile.sample.astype(np.float64), compared(live))
    p = ks_pvalue(d, len(profile.sample), len(live))
    drifted = value > thresholds.psi or (d > thresholds.ks and p < thresholds.p / n_columns)
    return {"psi": value, "ks": d, "p_value": p, "drifted": bool(drifted)}


def drift_report(
    reference: Reference,
    x: np.ndarray,
    answers: np.ndarray,
    names: list[str],
    thresholds: Thresholds,
) -> dict[str, Any]:
    """Every feature's drift (``names`` in order) of the window's rows ``x`` (n, n_features),
    and its answers' (``answer_column``), with ``drifted``: whether any feature drifted."""
    n_features = len(reference.features)
    features = [
        {"name": name, **column_drift(profile, x[:, i], thresholds, n_features)}
        for i, (name, profile) in enumerate(zip(names, reference.features, strict=True))
    ]
    return {
        "features": features,
        "predictions": column_drift(reference.answers, answers, thresholds, 1),
        "drifted": any(feature["drifted"] for feature in features),
    }


def binned_report(
    reference: Reference,
    counts: list[np.ndarray],
    answers: np.ndarray,
    names: list[str],
    thresholds: Thresholds,
) -> dict[str, Any]:
    """:func:`drift_report` from each feature's bin ``counts`` alone (the inputs were not
    kept): PSI per feature, no Kolmogorov-Smirnov (``ks`` and ``p_value`` None); the answers'
    figures in full."""
    features = []
    for name, profile, found in zip(names, reference.features, counts, strict=True):
        value = psi(profile.shares, found / found.sum())
        drifted = value > thresholds.psi
        features.append(
            {"name": name, "psi": value, "ks": None, "p_value": None, "drifted": drifted}
        )
    return {
        "features": features,
        "predictions": column_drift(reference.answers, answers, thresholds, 1),
        "drifted": any(feature["drifted"] for feature in features),
    }
