"""Explanations against their definitions and against independent implementations, in float64.

The same trained network is loaded into a PyTorch ``nn.Sequential`` whose first step is the
standardisation; autograd, captum and shap explain it there, and model_core must agree: a
plain Gauss-Legendre quadrature of autograd gradients to 1e-9, captum's IntegratedGradients to
1e-6 relative (it multiplies by its step weights in float32), Saliency and InputXGradient to
1e-12, shap's ExactExplainer to 1e-9. Completeness, efficiency, the linear identity and finite
differences need no other implementation.
"""

import os

# shap's numba kernels take 8 s to compile on their first call; on the 16 coalitions here they
# run as plain Python in no time. Read by numba when shap imports it, so set first.
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import shap  # noqa: E402
import torch  # noqa: E402
from captum.attr import InputXGradient, IntegratedGradients, Saliency  # noqa: E402

from model_core import Model, SpecError, train  # noqa: E402
from model_core.explanations import (  # noqa: E402
    GAUSS_LEGENDRE,
    TRAPEZOID,
    Targets,
    class_targets,
    coalitions,
    explain,
    input_gradients,
    integrated_gradients,
    quadrature_rule,
    resolve_targets,
    shapley_values,
)

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "linear"]
SMOOTH = ["sigmoid", "tanh", "linear"]
# (output activation, loss, task, outputs): every pairing of output and loss the spec takes.
OUTPUTS = [
    ("softmax", "cross_entropy", "classification", 3),
    ("softmax", "mse", "classification", 3),
    ("sigmoid", "binary_cross_entropy", "classification", 1),
    ("sigmoid", "sse", "classification", 2),
    ("linear", "mse", "regression", 2),
    ("tanh", "sse", "regression", 2),
]
# The output activations (one of each, and the single sigmoid unit) for the comparisons with
# other implementations: the loss does not change f, and every pairing is in OUTPUTS above.
DISTINCT_OUTPUTS = [OUTPUTS[0], OUTPUTS[2], OUTPUTS[3], OUTPUTS[4], OUTPUTS[5]]
N_FEATURES = 4
TORCH_ACTIVATIONS = {
    "sigmoid": torch.nn.Sigmoid,
    "tanh": torch.nn.Tanh,
    "relu": torch.nn.ReLU,
    "leaky_relu": lambda: torch.nn.LeakyReLU(0.01),
    "linear": torch.nn.Identity,
    "softmax": lambda: torch.nn.Softmax(dim=1),
}


def make_rows(n: int, seed: int) -> np.ndarray:
    """Rows far from standardised: means 3, -2, 0, 10 and spreads 1 to 5."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, N_FEATURES)) * [1.0, 2.0, 5.0, 0.5] + [3.0, -2.0, 0.0, 10.0]


def trained_model(hidden: str, output: str, loss: str, task: str, units: int) -> Model:
    """A float64 network 4-6-5-units trained for a few epochs on rows that need standardising."""
    x = make_rows(60, seed=1)
    if task == "classification":
        n_classes = max(units, 2)
        y = np.digitize(x[:, 0] + x[:, 1], np.quantile(x[:, 0] + x[:, 1], [1 / 3, 2 / 3]))
        y = y % n_classes
    else:
        y = np.column_stack([np.tanh(x[:, 0] - 3.0), 0.1 * x[:, 2]])
    network = {
        "layers": [
            {"units": 6, "activation": hidden},
            {"units": 5, "activation": hidden},
            {"units": units, "activation": output},
        ],
        "loss": loss,
        "dtype": "float64",
    }
    training = {"epochs": 20, "batch_size": 16, "seed": 3, "optimizer": {"name": "adam"}}
    return train(x, y, network, training, task=task).model


def torch_network(model: Model) -> torch.nn.Sequential:
    """The model in float64 PyTorch: standardisation, then Linear and activation per layer."""
    mean = torch.tensor(model.mean if model.mean is not None else np.zeros(model.n_features))
    scale = torch.tensor(model.scale if model.scale is not None else np.ones(model.n_features))

    class Standardize(torch.nn.Module):
        def forward(self, x):
            return (x - mean) / scale

    steps: list[torch.nn.Module] = [Standardize()]
    for (w, b), activation in zip(model.weights, model.activations, strict=True):
        linear = torch.nn.Linear(*w.shape, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(w.T))
            linear.bias.copy_(torch.tensor(b))
        steps += [linear, TORCH_ACTIVATIONS[activation.name]()]
    return torch.nn.Sequential(*steps)


def explained_outputs(model: Model) -> torch.nn.Module:
    """f per class as torch sees it: a single sigmoid unit becomes the columns (1 - p, p)."""
    network = torch_network(model)
    if model.n_outputs > 1:
        return network
    return torch.nn.Sequential(network, ComplementColumn())


class ComplementColumn(torch.nn.Module):
    def forward(self, p):
        return torch.cat([1.0 - p, p], dim=1)


def torch_target(model: Model, targets: Targets) -> torch.Tensor:
    """The column of :func:`explained_outputs` each row's target is."""
    columns = targets.units if model.n_outputs > 1 else (~targets.complements).astype(int)
    return torch.tensor(columns)


def some_targets(model: Model, n_rows: int) -> Targets:
    """Every output (or class) in turn, so that each is explained."""
    if model.task == "classification":
        return class_targets(model, np.arange(n_rows) % len(model.classes))
    return Targets(np.arange(n_rows) % model.n_outputs, np.zeros(n_rows, bool))


MODELS = {}


def model_for(hidden: str, output: tuple) -> Model:
    """Each trained model once per session."""
    key = (hidden, output)
    if key not in MODELS:
        MODELS[key] = trained_model(hidden, *output)
    return MODELS[key]


@pytest.mark.parametrize("output", OUTPUTS, ids=lambda o: f"{o[0]}-{o[1]}")
@pytest.mark.parametrize("hidden", SMOOTH)
def test_integrated_gradients_are_complete_for_smooth_activations(hidden, output):
    model = model_for(hidden, output)
    x, baseline = make_rows(6, seed=5), model.mean[np.newaxis]
    result = integrated_gradients(model, x, baseline, some_targets(model, 6), steps=64)
    change = np.abs(result.values - result.baseline_values)
    assert (result.completeness_errors() <= 1e-6 * change + 1e-15).all()


@pytest.mark.parametrize("output", OUTPUTS, ids=lambda o: f"{o[0]}-{o[1]}")
@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_completeness_of_relu_networks_improves_with_steps(hidden, output):
    """A ReLU network's path has kinks, where Gauss-Legendre loses its order: the error is
    reported, not bounded; it must shrink from 16 to 1024 steps."""
    model = model_for(hidden, output)
    x, baseline = make_rows(6, seed=5), model.mean[np.newaxis]
    targets = some_targets(model, 6)
    coarse, fine = (
        integrated_gradients(model, x, baseline, targets, steps).completeness_errors().sum()
        for steps in (16, 1024)
    )
    assert fine < coarse


def gauss_legendre_autograd(network, x, baseline, column, steps):
    """IG written out: sum over Gauss-Legendre nodes of w * dF/dx(b + alpha (x - b)) * (x - b)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    x, baseline = torch.tensor(x), torch.tensor(baseline)
    total = torch.zeros_like(x)
    for node, weight in zip(nodes, weights, strict=True):
        point = (baseline + (node + 1) / 2 * (x - baseline)).requires_grad_()
        output = network(point)[torch.arange(len(x)), column].sum()
        (gradient,) = torch.autograd.grad(output, point)
        total += weight / 2 * gradient
    return (total * (x - baseline)).numpy()


@pytest.mark.parametrize("output", DISTINCT_OUTPUTS, ids=lambda o: f"{o[0]}-{o[1]}")
@pytest.mark.parametrize("hidden", HIDDEN)
def test_integrated_gradients_agree_with_a_quadrature_of_autograd(hidden, output):
    model = model_for(hidden, output)
    x, baseline = make_rows(5, seed=6), make_rows(1, seed=7)
    targets = some_targets(model, 5)
    ours = integrated_gradients(model, x, baseline, targets, steps=16).attributions
    network, column = explained_outputs(model), torch_target(model, targets)
    expected = gauss_legendre_autograd(network, x, np.repeat(baseline, 5, 0), column, 16)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("output", DISTINCT_OUTPUTS, ids=lambda o: f"{o[0]}-{o[1]}")
@pytest.mark.parametrize("hidden", HIDDEN)
def test_integrated_gradients_agree_with_captum(hidden, output):
    model = model_for(hidden, output)
    x, baseline = make_rows(5, seed=6), make_rows(1, seed=7)
    targets = some_targets(model, 5)
    ours = integrated_gradients(model, x, baseline, targets, steps=50).attributions
    theirs = IntegratedGradients(explained_outputs(model)).attribute(
        torch.tensor(x),
        torch.tensor(baseline),
        target=torch_target(model, targets),
        n_steps=50,
        method="gausslegendre",
    )
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("output", DISTINCT_OUTPUTS, ids=lambda o: f"{o[0]}-{o[1]}")
@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradients_agree_with_captum_saliency_and_input_x_gradient(hidden, output):
    model = model_for(hidden, output)
    x, targets = make_rows(5, seed=8), some_targets(model, 5)
    network, column = explained_outputs(model), torch_target(model, targets)
    inputs = torch.tensor(x, requires_grad=True)
    saliency = Saliency(network).attribute(inputs, target=column, abs=False)
    input_x_gradient = InputXGradient(network).attribute(inputs, target=column)
    for method, theirs in (("gradient", saliency), ("gradient_x_input", input_x_gradient)):
        ours = explain(model, method, x, targets).attributions
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("output", DISTINCT_OUTPUTS, ids=lambda o: f"{o[0]}-{o[1]}")
@pytest.mark.parametrize("hidden", HIDDEN)
def test_exact_shapley_equals_shap_exact_explainer_and_is_efficient(hidden, output):
    model = model_for(hidden, output)
    x, background = make_rows(2, seed=9), make_rows(20, seed=10)
    targets = some_targets(model, 2)
    ours = shapley_values(model, x, background, targets)
    network, column = explained_outputs(model), torch_target(model, targets)
    for row in range(2):

        def f(points, row=row):
            with torch.no_grad():
                return network(torch.tensor(points))[:, column[row]].numpy()

        masker = shap.maskers.Independent(background, max_samples=len(background))
        theirs = shap.explainers.Exact(f, masker)(x[row : row + 1])
        np.testing.assert_allclose(ours.attributions[row], theirs.values[0], rtol=1e-9, atol=1e-12)
    change = ours.values - f_of(model, background, targets).mean(axis=0)
    np.testing.assert_allclose(ours.attributions.sum(axis=1), change, rtol=0, atol=1e-12)


def f_of(model: Model, rows: np.ndarray, targets: Targets) -> np.ndarray:
    """f of each explained row's target at each of ``rows``: (len(rows), n_explained)."""
    outputs = model.forward(rows)[:, targets.units]
    return np.where(targets.complements, 1.0 - outputs, outputs)


@pytest.mark.parametrize("quadrature", [GAUSS_LEGENDRE, TRAPEZOID])
def test_a_linear_model_gets_the_textbook_attributions(quadrature):
    """One linear layer: f = sum_i w_i (x_i - mean_i) / scale_i + c, so IG is exactly
    w_i (x_i - b_i) / scale_i, whatever the steps."""
    rng = np.random.default_rng(11)
    w, b = rng.normal(size=(N_FEATURES, 1)), rng.normal(size=1)
    mean, scale = rng.normal(size=N_FEATURES), rng.uniform(0.5, 3.0, N_FEATURES)
    network = {"layers": [{"units": 1, "activation": "linear"}], "dtype": "float64"}
    model = Model(network, [(w, b)], "regression", None, mean, scale)
    x, baseline = make_rows(7, seed=12), make_rows(1, seed=13)
    targets = Targets(np.zeros(7, np.intp), np.zeros(7, bool))
    result = integrated_gradients(model, x, baseline, targets, steps=7, quadrature=quadrature)
    np.testing.assert_allclose(
        result.attributions, w[:, 0] * (x - baseline) / scale, rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("output", OUTPUTS, ids=lambda o: f"{o[0]}-{o[1]}")
@pytest.mark.parametrize("hidden", SMOOTH)
def test_gradients_match_central_finite_differences(hidden, output):
    model = model_for(hidden, output)
    x, targets, h = make_rows(4, seed=14), some_targets(model, 4), 1e-5
    _, gradients = input_gradients(model, x, targets)
    for i in range(N_FEATURES):
        step = np.zeros(N_FEATURES)
        step[i] = h
        up, down = (np.diagonal(f_of(model, x + sign * step, targets)) for sign in (1, -1))
        np.testing.assert_allclose(gradients[:, i], (up - down) / (2 * h), rtol=0, atol=1e-7)


def test_chunks_give_the_same_attributions_as_one_pass():
    """Points split across chunks (a few points each, rows and baselines cut mid-way) add up to
    what one pass gives."""
    model = model_for("tanh", OUTPUTS[0])
    x, background = make_rows(3, seed=15), make_rows(5, seed=16)
    targets = some_targets(model, 3)
    tiny = 1000  # bytes: two points per chunk for this network (430 bytes a point)
    for method, steps in (("integrated_gradients", 9), ("shapley", 64), ("gradient", 64)):
        whole = explain(model, method, x, targets, background, steps)
        chunked = explain(model, method, x, targets, background, steps, max_bytes=tiny)
        np.testing.assert_allclose(chunked.attributions, whole.attributions, rtol=1e-12)


def test_the_quadrature_rules_integrate_over_zero_to_one():
    alphas, weights = quadrature_rule(TRAPEZOID, 4)
    np.testing.assert_array_equal(alphas, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(weights, [0.125, 0.25, 0.25, 0.25, 0.125])
    alphas, weights = quadrature_rule(GAUSS_LEGENDRE, 5)
    assert alphas.min() > 0 and alphas.max() < 1 and weights.sum() == pytest.approx(1, abs=1e-15)
    # Exact for polynomials of degree 2 * 5 - 1 on [0, 1]: the integral of a^9 is 1/10.
    assert weights @ alphas**9 == pytest.approx(0.1, abs=1e-15)
    with pytest.raises(SpecError, match="quadrature"):
        quadrature_rule("simpson", 4)


def test_an_unknown_method_is_refused_with_the_choices():
    model = model_for("tanh", OUTPUTS[0])
    with pytest.raises(SpecError, match=r"method: unknown 'lime': one of \['integrated_gradients'"):
        explain(model, "lime", make_rows(1, seed=1), some_targets(model, 1))


def test_coalitions_list_every_subset_once():
    masks = coalitions(3)
    assert masks.shape == (8, 3) and not masks[0].any() and masks[-1].all()
    assert len({tuple(row) for row in masks}) == 8


def test_targets_follow_the_classes_and_outputs():
    model = model_for("tanh", OUTPUTS[2])  # one sigmoid unit for classes 0 and 1
    x = make_rows(4, seed=17)
    targets, labels = resolve_targets(model, x, 0)
    assert labels == [0] * 4 and targets.complements.all()
    targets, labels = resolve_targets(model, x, "predicted")
    predicted = model.predict(x).tolist()
    assert labels == predicted and (targets.complements == (np.array(predicted) == 0)).all()
    with pytest.raises(SpecError, match=r"target: 7 is not a class"):
        resolve_targets(model, x, 7)
    regression = model_for("tanh", OUTPUTS[4])
    assert resolve_targets(regression, x, None)[1] == [0] * 4
    assert resolve_targets(regression, x, 1)[1] == [1] * 4
    for wrong in (2, "predicted", True):
        with pytest.raises(SpecError, match="target"):
            resolve_targets(regression, x, wrong)
