"""Explanations of a model's outputs as the API answers them: the baseline rows a request names,
the work it asks for checked against the limits, and the attributions by the names of the
model's signature.

No Flask: functions take the session and settings; a request that cannot be served raises
``DataError`` naming its field (``method``, ``target``, ``baseline``, ``steps``...), which the
API answers with a 422. The maths is model_core.explanations.
"""

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from model_core import Model, SpecError
from model_core.explanations import (
    BASELINE_METHODS,
    GAUSS_LEGENDRE,
    Attributions,
    evaluations,
    explain,
    resolve_targets,
)
from service.datasets.ingest import numeric_matrix
from service.db import records
from service.db.models import Dataset
from service.serving.model_inputs import feature_columns
from service.settings import Settings
from service.signatures import input_names, named_inputs
from service.vocabulary import DataError

DEFAULT_METHOD = "integrated_gradients"
DEFAULT_STEPS = 64


@dataclass(frozen=True)
class Baseline:
    """The rows a request's baseline stands for (n_baselines, n_features) in the model's dtype,
    and how the answer describes it."""

    rows: np.ndarray
    described: object


def training_mean(model: Model, signature: dict) -> np.ndarray | None:
    """The mean of the training rows: the standardisation's mean (the standardised zero), else
    the signature's profile of the training split (``standardize: false``); None when neither
    knows it (a model whose profile could not be computed)."""
    if model.mean is not None:
        return model.mean
    means = [feature["mean"] for feature in signature["inputs"]]
    return None if None in means else np.array(means)


def default_baseline(model: Model, signature: dict) -> str:
    """``"mean"`` when the training mean is known, else ``"zeros"``."""
    return "mean" if training_mean(model, signature) is not None else "zeros"


def fixed_baseline(model: Model, signature: dict, baseline: object) -> Baseline:
    """``"mean"``, ``"zeros"`` or a row of n_features numbers as one baseline row."""
    if baseline == "mean":
        mean = training_mean(model, signature)
        if mean is None:
            raise DataError(
                "baseline",
                "this model's training mean is not known (its profile could not be computed);"
                ' send "zeros", a row, or {"dataset_id": D, "rows": N}',
            )
        return Baseline(mean[np.newaxis].astype(model.dtype), "mean")
    if baseline == "zeros":
        return Baseline(np.zeros((1, model.n_features), model.dtype), "zeros")
    row = numeric_matrix([baseline], "baseline")
    if row.shape[1] != model.n_features:
        message = f"needs {model.n_features} values, one per feature; got {row.shape[1]}"
        raise DataError("baseline", message)
    return Baseline(row.astype(model.dtype), "row")


def sampled_rows(x: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """``rows`` of ``x`` drawn without replacement by a generator seeded with ``seed``, in their
    order in ``x``; all of them when it has no more."""
    if rows >= len(x):
        return x
    chosen = np.random.default_rng(seed).choice(len(x), size=rows, replace=False)
    return x[np.sort(chosen)]


def dataset_features(
    session: Session, dataset: Dataset, model: Model, signature: dict, field: str
) -> np.ndarray:
    """A stored data set's rows as the model's inputs: its columns matched by the signature's
    names when both have names, else all of them (as many as the model takes); a misfit is a
    ``DataError`` on ``field``."""
    columns = feature_columns(dataset, model, named_inputs(signature), field)
    x = records.get_dataset_arrays(session, dataset.id)[0]
    return x if columns is None else x[:, columns]


def background_baseline(
    session: Session, dataset: Dataset, model: Model, signature: dict, background: dict
) -> Baseline:
    """``{"dataset_id", "rows", "seed"}``: that many rows of the data set, a seeded sample."""
    x = dataset_features(session, dataset, model, signature, "baseline.dataset_id")
    rows = sampled_rows(x, background["rows"], background["seed"])
    described = {"dataset_id": dataset.id, "rows": len(rows), "seed": background["seed"]}
    return Baseline(rows.astype(model.dtype), described)


def checked_work(
    model: Model,
    method: str,
    n_rows: int,
    n_baselines: int,
    steps: int,
    quadrature: str,
    settings: Settings,
    rows_field: str = "instances",
) -> None:
    """Refuse what would take too long: exact Shapley beyond EXPLAIN_SHAPLEY_MAX_FEATURES
    (``method``), and more than EXPLAIN_MAX_EVALUATIONS forward rows in all, naming the field
    with the largest factor of that product (the rows come from ``rows_field``)."""
    n_features, most = model.n_features, settings.explain_shapley_max_features
    if method == "shapley" and n_features > most:
        raise DataError(
            "method",
            f"exact Shapley values take 2^n_features coalitions; this model has {n_features} "
            f"features, above EXPLAIN_SHAPLEY_MAX_FEATURES ({most}): use integrated_gradients",
        )
    work = evaluations(method, n_rows, n_features, n_baselines, steps, quadrature)
    if work <= settings.explain_max_evaluations:
        return
    factors = {rows_field: n_rows, "baseline.rows": n_baselines}
    if method == "integrated_gradients":
        factors["steps"] = steps
    field = max(factors, key=factors.get)
    raise DataError(
        field,
        f"this explanation would run the network on {work} rows, above EXPLAIN_MAX_EVALUATIONS "
        f"({settings.explain_max_evaluations}); lower {field}",
    )


def refused_method_fields(request: dict) -> None:
    """``steps`` and ``quadrature`` are for integrated_gradients, ``baseline`` for it and
    shapley: sent with another method they are a mistake, said so."""
    method = request["method"]
    for field in ("steps", "quadrature"):
        if field in request and method != "integrated_gradients":
            raise DataError(field, f"only for integrated_gradients, not {method}")
    if "baseline" in request and method not in BASELINE_METHODS:
        raise DataError("baseline", f"only for integrated_gradients and shapley, not {method}")


def attributions_for(
    model: Model,
    x: np.ndarray,
    request: dict,
    baseline: Baseline | None,
    settings: Settings,
    rows_field: str = "instances",
) -> tuple[Attributions, list]:
    """The attributions of rows ``x`` (from the request's ``rows_field``) and each row's
    target, as the request asks."""
    method = request["method"]
    steps = request.get("steps", DEFAULT_STEPS)
    quadrature = request.get("quadrature", GAUSS_LEGENDRE)
    n_baselines = 1 if baseline is None else len(baseline.rows)
    checked_work(model, method, len(x), n_baselines, steps, quadrature, settings, rows_field)
    x = x.astype(model.dtype, copy=False)
    max_bytes = settings.max_request_memory
    try:
        targets, labels = resolve_targets(model, x, request.get("target"), max_bytes)
    except SpecError as error:
        raise DataError(error.field, error.message) from None
    baselines = None if baseline is None else baseline.rows
    result = explain(model, method, x, targets, baselines, steps, quadrature, max_bytes)
    return result, labels


def explanation_rows(
    result: Attributions, labels: list, names: list[str], complete: bool
) -> list[dict]:
    """Per row: target, f_x, f_baseline and completeness_error (when ``complete``: methods with
    a baseline) and the attributions by feature name in input order."""
    errors = result.completeness_errors() if complete else None
    explained = []
    for i, label in enumerate(labels):
        row = {"target": label, "f_x": float(result.values[i])}
        if complete:
            row["f_baseline"] = float(result.baseline_values[i])
            row["completeness_error"] = float(errors[i])
        row["attributions"] = dict(zip(names, result.attributions[i].tolist(), strict=True))
        explained.append(row)
    return explained


def request_baseline(
    session: Session, model: Model, signature: dict, request: dict
) -> Baseline | None:
    """The baseline of a request whose method has one (None otherwise): its ``baseline``, or
    :func:`default_baseline`."""
    if request["method"] not in BASELINE_METHODS:
        return None
    baseline = request.get("baseline", default_baseline(model, signature))
    if not isinstance(baseline, dict):
        return fixed_baseline(model, signature, baseline)
    dataset = records.get_dataset(session, baseline["dataset_id"])
    if dataset is None:
        raise DataError("baseline.dataset_id", f"no data set {baseline['dataset_id']}")
    return background_baseline(session, dataset, model, signature, baseline)


def settings_used(model: Model, request: dict, baseline: Baseline | None) -> dict:
    """``method``, ``target``, ``baseline``, ``steps`` and ``quadrature`` as used (the last
    three only for the methods that take them)."""
    method = request["method"]
    used = {"method": method, "target": request.get("target", default_target(model))}
    if baseline is not None:
        used["baseline"] = baseline.described
    if method == "integrated_gradients":
        used["steps"] = request.get("steps", DEFAULT_STEPS)
        used["quadrature"] = request.get("quadrature", GAUSS_LEGENDRE)
    return used


def explanation(
    session: Session,
    model: Model,
    signature: dict,
    x: np.ndarray,
    request: dict,
    settings: Settings,
) -> dict:
    """The answer to an explain request on rows ``x`` (in input order): :func:`settings_used`
    and ``explanations``, one per row, their attributions keyed by the signature's input names."""
    refused_method_fields(request)
    baseline = request_baseline(session, model, signature, request)
    result, labels = attributions_for(model, x, request, baseline, settings)
    rows = explanation_rows(result, labels, input_names(signature), baseline is not None)
    return {**settings_used(model, request, baseline), "explanations": rows}


def importance(
    session: Session,
    model: Model,
    signature: dict,
    dataset: Dataset,
    request: dict,
    settings: Settings,
) -> dict:
    """Global feature importance: the mean absolute attribution per input (keyed by the
    signature's names) over a seeded sample of ``request["rows"]`` rows of ``dataset`` (all of
    them if it has fewer), with :func:`settings_used`, the sample's ``dataset_id``, ``rows`` and
    ``seed``."""
    refused_method_fields(request)
    x = dataset_features(session, dataset, model, signature, "dataset_id")
    sample = sampled_rows(x, request["rows"], request["seed"])
    baseline = request_baseline(session, model, signature, request)
    result, _ = attributions_for(model, sample, request, baseline, settings, "rows")
    mean_absolute = np.abs(result.attributions).mean(axis=0).tolist()
    return {
        "dataset_id": dataset.id,
        "rows": len(sample),
        "seed": request["seed"],
        **settings_used(model, request, baseline),
        "importance": dict(zip(input_names(signature), mean_absolute, strict=True)),
    }


def checked_importance(
    session: Session, model: Model, dataset: Dataset, request: dict, settings: Settings
) -> int:
    """The forward rows an importance request would run (its sample of ``dataset`` by
    ``steps`` by its baseline's rows), refused as :func:`importance` would refuse it within
    ``settings``, without reading any rows."""
    refused_method_fields(request)
    method = request["method"]
    n_rows = min(request["rows"], dataset.n_samples)
    n_baselines = 1
    baseline = request.get("baseline")
    if method in BASELINE_METHODS and isinstance(baseline, dict):
        background = records.get_dataset(session, baseline["dataset_id"])
        if background is None:
            raise DataError("baseline.dataset_id", f"no data set {baseline['dataset_id']}")
        n_baselines = min(baseline["rows"], background.n_samples)
    steps = request.get("steps", DEFAULT_STEPS)
    quadrature = request.get("quadrature", GAUSS_LEGENDRE)
    checked_work(model, method, n_rows, n_baselines, steps, quadrature, settings, "rows")
    return evaluations(method, n_rows, model.n_features, n_baselines, steps, quadrature)


def default_target(model: Model) -> object:
    """``"predicted"`` for classification, output 0 for regression."""
    return "predicted" if model.task == "classification" else 0
