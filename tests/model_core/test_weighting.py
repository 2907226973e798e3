"""Class and sample weights: an integer weight k trains as k copies of its rows would.

In float64 with full-batch gradient descent, no standardisation (whose statistics stay
unweighted) and no validation split, weighting a row k times and repeating it k times give the
same gradient at every step but for the order of the sums: the weights agree within 1e-10.
"""

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.utils.class_weight import compute_class_weight

from model_core import SpecError, Trainer, train

EPOCHS = 60
FULL_BATCH = {
    "epochs": EPOCHS,
    "batch_size": "full",
    "seed": 3,
    "standardize": False,
    "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.5},
}
NETWORKS = {
    "softmax": ({"units": 3, "activation": "softmax"}, None),
    "softmax_sse": ({"units": 3, "activation": "softmax"}, "sse"),
    "sigmoid_mse": ({"units": 3, "activation": "sigmoid"}, "mse"),
}


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def network(output: dict, loss: str | None) -> dict:
    spec = {"layers": [{"units": 5, "activation": "tanh"}, output], "dtype": "float64"}
    return spec if loss is None else {**spec, "loss": loss}


def max_weight_difference(a, b) -> float:
    return max(
        float(np.max(np.abs(wa - wb)))
        for pair_a, pair_b in zip(a.model.weights, b.model.weights, strict=True)
        for wa, wb in zip(pair_a, pair_b, strict=True)
    )


@pytest.mark.parametrize("name", NETWORKS)
def test_integer_class_weight_equals_repeating_that_class(iris, name):
    x, y = iris
    spec = network(*NETWORKS[name])
    weighted = train(x, y, spec, {**FULL_BATCH, "class_weight": {"1": 3}})
    repeated_rows = np.concatenate([np.arange(len(y)), *[np.flatnonzero(y == 1)] * 2])
    repeated = train(x[repeated_rows], y[repeated_rows], spec, FULL_BATCH)
    assert max_weight_difference(weighted, repeated) < 1e-10
    assert max_weight_difference(weighted, train(x, y, spec, FULL_BATCH)) > 1e-3
    losses = [record["train_loss"] for record in weighted.history]
    expected = [record["train_loss"] for record in repeated.history]
    np.testing.assert_allclose(losses, expected, rtol=1e-12)


def test_integer_sample_weights_equal_repeating_rows_and_zero_drops_them(iris):
    x, y = iris
    counts = np.random.default_rng(0).integers(0, 4, len(y))
    spec = network(*NETWORKS["softmax"])
    weighted = train(x, y, spec, FULL_BATCH, sample_weight=counts)
    rows = np.repeat(np.arange(len(y)), counts)
    repeated = train(x[rows], y[rows], spec, FULL_BATCH)
    assert max_weight_difference(weighted, repeated) < 1e-10


def test_a_binary_sigmoid_output_weighs_its_classes(iris):
    x, y = iris
    binary = (y == 2).astype(int)
    spec = {
        "layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "sigmoid"}],
        "dtype": "float64",
    }
    weighted = train(x, binary, spec, {**FULL_BATCH, "class_weight": {"0": 2}})
    rows = np.concatenate([np.arange(len(y)), np.flatnonzero(binary == 0)])
    repeated = train(x[rows], binary[rows], spec, FULL_BATCH)
    assert max_weight_difference(weighted, repeated) < 1e-10


def test_class_weight_and_sample_weights_multiply(iris):
    x, y = iris
    spec = network(*NETWORKS["softmax"])
    sample_weight = np.where(np.arange(len(y)) % 2 == 0, 2.0, 1.0)
    both = train(x, y, spec, {**FULL_BATCH, "class_weight": {"0": 3}}, sample_weight=sample_weight)
    product = train(x, y, spec, FULL_BATCH, sample_weight=sample_weight * np.where(y == 0, 3, 1))
    assert max_weight_difference(both, product) < 1e-12


def test_balanced_is_scikit_learns(iris):
    x, y = iris
    keep = np.r_[0:50, 50:70, 100:110]  # 50, 20 and 10 rows
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y[keep])
    spec = network(*NETWORKS["softmax"])
    balanced = train(x[keep], y[keep], spec, {**FULL_BATCH, "class_weight": "balanced"})
    given = {str(label): float(w) for label, w in enumerate(expected)}
    explicit = train(x[keep], y[keep], spec, {**FULL_BATCH, "class_weight": given})
    assert max_weight_difference(balanced, explicit) == 0.0
    assert balanced.model.training["class_weight"] == "balanced"


def test_validation_loss_is_the_weighted_mean(iris):
    x, y = iris
    counts = np.random.default_rng(1).integers(1, 4, len(y))
    spec = network(*NETWORKS["softmax"])
    training = {**FULL_BATCH, "epochs": 5}
    weighted = train(x, y, spec, training, validation_data=(x, y, counts))
    rows = np.repeat(np.arange(len(y)), counts)
    repeated = train(x, y, spec, training, validation_data=(x[rows], y[rows]))
    got = [record["val_loss"] for record in weighted.history]
    expected = [record["val_loss"] for record in repeated.history]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_mini_batches_and_a_split_train_with_weights(iris):
    x, y = iris
    training = {"epochs": 30, "batch_size": 16, "seed": 1, "validation_split": 0.2}
    result = train(
        x,
        y,
        network(*NETWORKS["softmax"]),
        {**training, "class_weight": "balanced"},
        sample_weight=np.linspace(0.5, 2.0, len(y)),
    )
    assert result.history[-1]["val_accuracy"] > 0.8
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.parametrize(
    ("training", "sample_weight", "path", "message"),
    [
        ({"class_weight": {"7": 2}}, None, "training.class_weight.7", "unknown label '7'"),
        ({"class_weight": {"1": -1}}, None, "training.class_weight.1", "finite number >= 0"),
        ({"class_weight": {"1": "x"}}, None, "training.class_weight.1", "must be a number"),
        ({"class_weight": "even"}, None, "training.class_weight", "must be 'balanced'"),
        ({"class_weight": {"0": 0, "1": 0, "2": 0}}, None, "training.class_weight", "weight 0"),
        ({}, [1.0] * 149 + [-2.0], "data.sample_weight", "at row 149 is -2.0"),
        ({}, [1.0] * 20 + [np.nan] * 130, "data.sample_weight", "at row 20 is nan"),
        ({}, [1.0] * 3, "data.sample_weight", "has shape (3,)"),
        ({}, [0.0] * 150, "data.sample_weight", "weight 0"),
        ({}, [1e308] * 150, "data.sample_weight", "more than a float64 holds"),
    ],
)
def test_bad_weights_name_the_field(iris, training, sample_weight, path, message):
    x, y = iris
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        train(x, y, network(*NETWORKS["softmax"]), training, sample_weight=sample_weight)
    assert raised.value.path == path


def test_class_weight_is_for_classification(iris):
    x, _ = iris
    spec = {"layers": [{"units": 1, "activation": "linear"}]}
    with pytest.raises(SpecError, match="class_weight: is for classification"):
        train(x, x[:, 0], spec, {"class_weight": "balanced"}, task="regression")


def test_sample_weights_weigh_a_regression(iris):
    x, _ = iris
    target = x[:, 0]
    spec = {"layers": [{"units": 1, "activation": "linear"}], "dtype": "float64"}
    counts = np.arange(len(target)) % 3
    weighted = train(x[:, 1:], target, spec, FULL_BATCH, task="regression", sample_weight=counts)
    rows = np.repeat(np.arange(len(target)), counts)
    repeated = train(x[rows, 1:], target[rows], spec, FULL_BATCH, task="regression")
    assert max_weight_difference(weighted, repeated) < 1e-10


def test_a_resumed_weighted_run_matches_an_uninterrupted_one(iris):
    x, y = iris
    weights = np.linspace(0.0, 2.0, len(y))
    training = {
        "epochs": 6,
        "batch_size": 16,
        "seed": 4,
        "validation_split": 0.2,
        "class_weight": "balanced",
        "optimizer": {"name": "adam"},
    }
    spec = network(*NETWORKS["softmax"])
    whole = train(x, y, spec, training, sample_weight=weights)
    first = Trainer(x, y, spec, {**training, "epochs": 3}, sample_weight=weights)
    first.fit()
    resumed = train(x, y, spec, training, sample_weight=weights, resume_from=first.checkpoint())
    assert max_weight_difference(whole, resumed) == 0.0

    def figures(result):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in result.history]

    assert figures(resumed) == figures(whole)


def test_class_weighted_cross_entropy_and_its_gradient_are_pytorchs(iris):
    """torch's cross_entropy(weight=...) with mean reduction is sum(w_i l_i) / sum(w_i): the same
    loss, and the same gradient on the same weights, within 1e-12."""
    torch = pytest.importorskip("torch")
    x, y = iris
    class_weight = {"0": 0.5, "1": 2.0, "2": 3.0}
    spec = network(*NETWORKS["softmax"])
    trainer = Trainer(x, y, spec, {**FULL_BATCH, "class_weight": class_weight})
    loss, _ = trainer.compute_gradients(np.arange(len(y)))

    (w0, b0), (w1, b1) = [
        (torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True))
        for w, b in trainer.weights
    ]
    hidden = torch.tanh(torch.from_numpy(x) @ w0 + b0)
    reference = torch.nn.functional.cross_entropy(
        hidden @ w1 + b1,
        torch.from_numpy(y),
        weight=torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64),
    )
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=1e-12)
    for ours, theirs in zip(trainer.grads, (w0, b0, w1, b1), strict=True):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_the_scale_of_the_weights_changes_nothing_even_beyond_float32(iris):
    """The loss is a weighted mean: weights times any c train alike, in float32 too, where
    weights of 1e37 would overflow a batch's sum if they were kept as given."""
    x, y = iris
    spec = {**network(*NETWORKS["softmax"]), "dtype": "float32"}
    training = {"epochs": 5, "batch_size": 16, "seed": 2}
    weights = np.linspace(0.5, 2.0, len(y))
    small = train(x, y, spec, training, sample_weight=weights)
    huge = train(x, y, spec, training, sample_weight=weights * 1e37)
    assert max_weight_difference(small, huge) < 1e-5
    assert all(np.isfinite(record["train_loss"]) for record in huge.history)
