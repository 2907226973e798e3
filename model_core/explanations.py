"""Why a network answered what it did: the input gradient, Integrated Gradients and exact
(interventional) Shapley values of one of its outputs, with respect to the raw inputs.

The explained function ``f(x)`` is one output unit after the last activation (a softmax or
sigmoid probability, or a regression value), or ``1 - p`` for class 0 of a single sigmoid unit,
as a function of the raw row ``x`` through the standardisation ``(x - mean) / scale``. Its
gradient is the backward pass that trains (:func:`model_core.network.backpropagate_error`),
seeded with +1 (or -1 for ``1 - p``) on the target unit instead of a loss's error.

Arrays hold one sample per row. Every method evaluates the network at many points (a row's
interpolation points, or its coalitions times the background rows); the points go through the
network a chunk at a time, all of a chunk in one forward (and one backward) pass, with buffers
that stay within ``max_bytes``.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from math import factorial

import numpy as np

from model_core.errors import SpecError
from model_core.network import Model, backpropagate_error, class_indices
from model_core.preprocessing import CHUNK_ROWS, standardize_into

PREDICTED = "predicted"
GAUSS_LEGENDRE, TRAPEZOID = "gauss_legendre", "trapezoid"
METHODS: Sequence[str] = ("integrated_gradients", "gradient", "gradient_x_input", "shapley")
BASELINE_METHODS = ("integrated_gradients", "shapley")  # the methods that take baselines


@dataclass(frozen=True)
class Targets:
    """The output each row explains: ``units`` (n_rows,) the output unit, ``complements``
    (n_rows,) True where f is ``1 - a`` of that unit (class 0 of a single sigmoid output)."""

    units: np.ndarray
    complements: np.ndarray

    def take(self, rows: np.ndarray) -> "Targets":
        """The targets of ``rows`` (indices into this one's rows), one per entry."""
        return Targets(self.units[rows], self.complements[rows])


@dataclass(frozen=True)
class Attributions:
    """Per explained row: ``values`` f(x) (n_rows,), ``baseline_values`` f(baseline) averaged
    over the baseline rows (n_rows,) and ``attributions`` (n_rows, n_features)."""

    values: np.ndarray
    baseline_values: np.ndarray
    attributions: np.ndarray

    def completeness_errors(self) -> np.ndarray:
        """|sum of a row's attributions - (f(x) - f(baseline))| (n_rows,): 0 for exact methods."""
        return np.abs(self.attributions.sum(axis=1) - (self.values - self.baseline_values))


# --- targets -------------------------------------------------------------------------------


def class_targets(model: Model, class_index: np.ndarray) -> Targets:
    """Targets for class indices (n_rows,) into ``model.classes``: the unit itself, or for a
    single sigmoid unit unit 0, as ``1 - p`` for class 0."""
    class_index = np.asarray(class_index, dtype=np.intp)
    if model.n_outputs == 1:
        return Targets(np.zeros_like(class_index), class_index == 0)
    return Targets(class_index, np.zeros(len(class_index), bool))


def resolve_targets(
    model: Model, x: np.ndarray, target: object, max_bytes: int | None = None
) -> tuple[Targets, list]:
    """The targets of rows ``x`` (n_rows, n_features) and what each one is, as the answer names
    it (a class label, or an output index).

    ``target``: for classification ``"predicted"`` (each row's predicted class; also None) or
    one of ``model.classes``; for regression an output index (None: 0). Raises ``SpecError``
    on field ``target``."""
    n_rows = len(x)
    if model.task == "classification":
        if target is None or target == PREDICTED:
            class_index = class_indices(model.forward(x, max_bytes))
        else:
            class_index = np.full(n_rows, class_position(model, target), np.intp)
        labels = [model.classes[i] for i in class_index.tolist()]
        return class_targets(model, class_index), labels
    index = output_index(model, target)
    return Targets(np.full(n_rows, index, np.intp), np.zeros(n_rows, bool)), [index] * n_rows


def class_position(model: Model, label: object) -> int:
    """Where ``label`` is among ``model.classes``; ``SpecError`` on ``target`` when it is not."""
    for position, known in enumerate(model.classes):
        if type(known) is type(label) and known == label:
            return position
    raise SpecError(
        "explain",
        "target",
        f"{label!r} is not a class of the model; its classes are "
        f'{model.classes[:20]} (or "{PREDICTED}")',
    )


def output_index(model: Model, target: object) -> int:
    """A regression target: an output index below ``model.n_outputs`` (None: 0)."""
    if target is None:
        return 0
    if isinstance(target, bool) or not isinstance(target, int):
        raise SpecError("explain", "target", "must be an output index (an integer) for regression")
    if not 0 <= target < model.n_outputs:
        raise SpecError(
            "explain",
            "target",
            f"output {target} does not exist: the model has "
            f"{model.n_outputs} output(s), 0 to {model.n_outputs - 1}",
        )
    return target


# --- the network at many points ------------------------------------------------------------


def points_per_chunk(model: Model, max_bytes: int | None) -> int:
    """Points per pass: CHUNK_ROWS, fewer when a point's buffers times that would pass
    ``max_bytes``. A point holds every layer's activation and error, a byte per unit for the
    mask a ReLU's derivative makes, four rows of features (the point, its input error, and what
    builds it) and its indices."""
    if max_bytes is None:
        return CHUNK_ROWS
    units = sum(w.shape[1] for w, _ in model.weights)
    point_bytes = (2 * units + 4 * model.n_features) * model.dtype.itemsize + units + 64
    return max(1, min(CHUNK_ROWS, max_bytes // point_bytes))


def chunks(n_points: int, step: int) -> Iterator[np.ndarray]:
    """Indices 0..n_points-1 (intp) a chunk of at most ``step`` at a time."""
    for start in range(0, n_points, step):
        yield np.arange(start, min(start + step, n_points))


def target_values(outputs: np.ndarray, targets: Targets) -> np.ndarray:
    """f at each point: outputs (n, units) at ``targets.units``, ``1 - a`` where complemented."""
    a = outputs[np.arange(len(outputs)), targets.units]
    return np.where(targets.complements, 1.0 - a, a)


def forward_all(model: Model, points: np.ndarray) -> list[np.ndarray]:
    """Every layer's activation for raw ``points`` (n, n_features), which are standardised in
    place (they are the caller's scratch)."""
    standardize_into(points, model.mean, model.scale)
    outputs, a = [], points
    for (w, b), activation in zip(model.weights, model.activations, strict=True):
        a = a @ w
        a += b
        activation.forward(a)
        outputs.append(a)
    return outputs


def values_at(model: Model, points: np.ndarray, targets: Targets) -> np.ndarray:
    """f at raw ``points`` (n, n_features; overwritten), one target per point: (n,)."""
    return target_values(forward_all(model, points)[-1], targets)


def gradients_at(
    model: Model, points: np.ndarray, targets: Targets
) -> tuple[np.ndarray, np.ndarray]:
    """f (n,) and its gradient with respect to the raw inputs (n, n_features) at raw ``points``
    (overwritten), one target per point: one forward and one backward pass."""
    outputs = forward_all(model, points)
    values = target_values(outputs[-1], targets)
    deltas = [np.empty_like(a) for a in outputs]
    deltas[-1].fill(0.0)
    seeds = np.where(targets.complements, -1.0, 1.0)
    deltas[-1][np.arange(len(points)), targets.units] = seeds
    model.activations[-1].backward(deltas[-1], outputs[-1])
    for i in range(len(model.weights) - 1, 0, -1):
        backpropagate_error(i, model.weights, model.activations, outputs, deltas)
    gradients = deltas[0] @ model.weights[0][0].T
    if model.scale is not None:
        gradients /= model.scale
    return values, gradients


# --- methods -------------------------------------------------------------------------------


def input_gradients(
    model: Model, x: np.ndarray, targets: Targets, max_bytes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """f(x) (n_rows,) and df/dx (n_rows, n_features) at raw rows ``x``."""
    values = np.empty(len(x), model.dtype)
    gradients = np.empty(x.shape, model.dtype)
    for rows in chunks(len(x), points_per_chunk(model, max_bytes)):
        values[rows], gradients[rows] = gradients_at(model, x[rows], targets.take(rows))
    return values, gradients


@lru_cache(maxsize=64)
def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """NumPy's ``leggauss`` nodes and weights, mapped from [-1, 1] to [0, 1]; read-only.

    Kept per ``steps``: ``leggauss`` finds the nodes as eigenvalues of a steps x steps matrix
    (0.3 s at 1024 steps, 0.4 ms at 64), and they depend on nothing else."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (nodes + 1.0) / 2.0, weights / 2.0
    alphas.flags.writeable = weights.flags.writeable = False
    return alphas, weights


def trapezoid(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The trapezoid rule on ``steps + 1`` evenly spaced points of [0, 1]; weights sum to 1."""
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] /= 2.0
    return np.linspace(0.0, 1.0, steps + 1), weights


QUADRATURES: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray]]] = {
    GAUSS_LEGENDRE: gauss_legendre,
    TRAPEZOID: trapezoid,
}


def quadrature_rule(name: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of the named rule on [0, 1]; ``SpecError`` on an unknown name."""
    if name not in QUADRATURES:
        raise SpecError("explain", "quadrature", f"unknown {name!r}: one of {list(QUADRATURES)}")
    return QUADRATURES[name](steps)


def values_of(
    model: Model, x: np.ndarray, targets: Targets, max_bytes: int | None = None
) -> np.ndarray:
    """f at raw rows ``x`` (n_rows, n_features), one target per row: (n_rows,)."""
    return target_values(model.forward(x, max_bytes), targets)


def baseline_values(
    model: Model, baselines: np.ndarray, targets: Targets, max_bytes: int | None = None
) -> np.ndarray:
    """Per explained row, f of its target averaged over the baseline rows (n_baselines,
    n_features): (n_rows,). f is affine in the outputs, so it is f of their mean."""
    mean_outputs = model.forward(baselines, max_bytes).mean(axis=0, dtype=np.float64)
    a = mean_outputs[targets.units]
    return np.where(targets.complements, 1.0 - a, a)


def integrated_gradients(
    model: Model,
    x: np.ndarray,
    baselines: np.ndarray,
    targets: Targets,
    steps: int = 64,
    quadrature: str = GAUSS_LEGENDRE,
    max_bytes: int | None = None,
) -> Attributions:
    """Integrated Gradients of raw rows ``x`` (n_rows, n_features) from each of ``baselines``
    (n_baselines, n_features), averaged over the baselines:
    ``(x - b) * integral over [0, 1] of df/dx(b + alpha (x - b))``, by the quadrature rule.

    The points (row, baseline, alpha) are laid end to end and go through the network a chunk
    at a time; each point's weighted gradient times ``x - b`` is added into its row."""
    alphas, weights = quadrature_rule(quadrature, steps)
    n_rows, n_baselines, n_alphas = len(x), len(baselines), len(alphas)
    weights = weights / n_baselines
    attributions = np.zeros(x.shape)
    for points in chunks(n_rows * n_baselines * n_alphas, points_per_chunk(model, max_bytes)):
        pair, step = np.divmod(points, n_alphas)
        rows, baseline = np.divmod(pair, n_baselines)
        difference = x[rows] - baselines[baseline]
        path = baselines[baseline] + alphas[step, np.newaxis].astype(model.dtype) * difference
        _, gradients = gradients_at(model, path, targets.take(rows))
        gradients *= difference
        np.add.at(attributions, rows, weights[step, np.newaxis] * gradients)
    values = values_of(model, x, targets, max_bytes)
    return Attributions(values, baseline_values(model, baselines, targets, max_bytes), attributions)


def coalitions(n_features: int) -> np.ndarray:
    """Every subset of the features as a row of a (2**n_features, n_features) bool mask:
    subset s holds feature i when bit i of s is set (row 0 none, the last all)."""
    subsets = np.arange(2**n_features)[:, np.newaxis]
    return (subsets >> np.arange(n_features)) & 1 == 1


def shapley_coefficients(masks: np.ndarray) -> np.ndarray:
    """(2**n, n): phi = v @ coefficients for coalition values v (n_rows, 2**n). Feature i gets
    ``|S|! (n - |S| - 1)! / n!`` times v(S + i) - v(S) for every S without it."""
    n = masks.shape[1]
    sizes = masks.sum(axis=1)
    weight = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    with_i = weight[np.maximum(sizes - 1, 0)][:, np.newaxis]
    without_i = weight[np.minimum(sizes, n - 1)][:, np.newaxis]
    return np.where(masks, with_i, -without_i)


def shapley_values(
    model: Model,
    x: np.ndarray,
    background: np.ndarray,
    targets: Targets,
    max_bytes: int | None = None,
) -> Attributions:
    """Exact interventional Shapley values of raw rows ``x`` (n_rows, n_features): the value of
    a coalition S is the mean over ``background`` (n_background, n_features) of f at the row
    whose features in S are x's and the others the background row's. All 2**n_features
    coalitions are evaluated, so this is for a few features only.

    ``values`` is v(all features) (f(x), averaged over identical points) and
    ``baseline_values`` v(none), so the attributions sum to their difference (efficiency)."""
    masks = coalitions(x.shape[1])
    n_rows, n_coalitions, n_background = len(x), len(masks), len(background)
    totals = np.zeros(n_rows * n_coalitions)
    for points in chunks(n_rows * n_coalitions * n_background, points_per_chunk(model, max_bytes)):
        row_coalition, b = np.divmod(points, n_background)
        rows, coalition = np.divmod(row_coalition, n_coalitions)
        mixed = np.where(masks[coalition], x[rows], background[b])
        f = values_at(model, mixed, targets.take(rows))
        totals += np.bincount(row_coalition, weights=f, minlength=len(totals))
    coalition_values = totals.reshape(n_rows, n_coalitions) / n_background
    phi = coalition_values @ shapley_coefficients(masks)
    return Attributions(coalition_values[:, -1], coalition_values[:, 0], phi)


def evaluations(
    method: str,
    n_rows: int,
    n_features: int,
    n_baselines: int = 1,
    steps: int = 64,
    quadrature: str = GAUSS_LEGENDRE,
) -> int:
    """Points at which a method evaluates the network (forward rows), besides the rows and the
    baselines themselves: the work a request asks for."""
    if method == "shapley":
        return n_rows * 2**n_features * n_baselines
    if method == "integrated_gradients":
        return n_rows * n_baselines * len(quadrature_rule(quadrature, steps)[0])
    return n_rows


def explain(
    model: Model,
    method: str,
    x: np.ndarray,
    targets: Targets,
    baselines: np.ndarray | None = None,
    steps: int = 64,
    quadrature: str = GAUSS_LEGENDRE,
    max_bytes: int | None = None,
) -> Attributions:
    """One of METHODS on raw rows ``x``; ``baselines`` (n, n_features) for integrated_gradients
    and shapley (where they are the background). The gradient methods' ``baseline_values``
    are NaN: they have no baseline. ``SpecError`` on ``method`` for another name."""
    if method not in METHODS:
        raise SpecError("explain", "method", f"unknown {method!r}: one of {list(METHODS)}")
    if method == "integrated_gradients":
        return integrated_gradients(model, x, baselines, targets, steps, quadrature, max_bytes)
    if method == "shapley":
        return shapley_values(model, x, baselines, targets, max_bytes)
    values, gradients = input_gradients(model, x, targets, max_bytes)
    if method == "gradient_x_input":
        gradients *= x
    return Attributions(values, np.full(len(x), np.nan), gradients)
