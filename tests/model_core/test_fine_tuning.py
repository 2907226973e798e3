"""Fine-tuning: a network that starts from a trained model (``init_from``)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from model_core import Model, SpecError, Trainer, train

NETWORK = {
    "layers": [{"units": 32, "activation": "relu"}, {"units": 10, "activation": "softmax"}],
    "dtype": "float64",
}
# A slow learning rate, so that a head start shows in the epochs it saves.
SLOW = {"batch_size": 32, "seed": 5, "optimizer": {"name": "sgd", "learning_rate": 0.01}}
TARGET_ACCURACY = 0.9


@pytest.fixture(scope="module")
def digits():
    """The digits rows in three parts: the parent's half, the fine-tuning half, held-out."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    first, second, held_out = order[:700], order[700:1400], order[1400:]
    return (x[first], y[first]), (x[second], y[second]), (x[held_out], y[held_out])


@pytest.fixture(scope="module")
def parent(digits):
    (x, y), _, _ = digits
    return train(x, y, NETWORK, {**SLOW, "epochs": 30}).model


def epochs_to_reach(history: list[dict], accuracy: float) -> int | None:
    """The first epoch whose held-out (validation) accuracy reaches ``accuracy``."""
    return next((r["epoch"] for r in history if r["val_accuracy"] >= accuracy), None)


def test_zero_epochs_reproduce_the_parents_predictions_exactly(digits, parent):
    _, (x, y), (x_test, _) = digits
    child = train(x, y, NETWORK, {"epochs": 0}, init_from=parent).model
    assert np.array_equal(child.forward(x_test), parent.forward(x_test))
    assert np.array_equal(child.mean, parent.mean) and np.array_equal(child.scale, parent.scale)
    assert list(child.predict(x_test)) == list(parent.predict(x_test))


def test_zero_epochs_need_a_model_or_initial_weights(digits):
    _, (x, y), _ = digits
    with pytest.raises(SpecError, match="epochs: must be >= 1") as raised:
        train(x, y, NETWORK, {"epochs": 0})
    assert raised.value.path == "training.epochs"


def test_fine_tuning_reaches_the_accuracy_in_fewer_epochs_than_a_fresh_network(digits, parent):
    _, (x, y), held_out = digits
    training = {**SLOW, "epochs": 60}
    tuned = train(x, y, NETWORK, training, init_from=parent, validation_data=held_out)
    fresh = train(x, y, NETWORK, training, validation_data=held_out)
    tuned_epochs = epochs_to_reach(tuned.history, TARGET_ACCURACY)
    fresh_epochs = epochs_to_reach(fresh.history, TARGET_ACCURACY)
    print(
        f"held-out accuracy {TARGET_ACCURACY}: fine-tuned at epoch {tuned_epochs},"
        f" fresh at epoch {fresh_epochs}"
    )
    assert tuned_epochs is not None
    assert fresh_epochs is None or tuned_epochs < fresh_epochs


def test_replace_output_trains_on_other_classes(digits, parent):
    _, (x, y), (x_test, y_test) = digits
    letters = np.array(list("abcde"))[y % 5]  # five classes the parent never saw
    network = {**NETWORK, "layers": [NETWORK["layers"][0], {"units": 5, "activation": "softmax"}]}
    start = Trainer(
        x, letters, network, {**SLOW, "epochs": 20}, init_from=parent, replace_output=True
    )
    hidden_w, hidden_b = start.weights[0]
    assert np.array_equal(hidden_w, parent.weights[0][0])
    assert np.array_equal(hidden_b, parent.weights[0][1])
    assert start.weights[1][0].shape == (32, 5)
    result = start.fit()
    accuracy = np.mean(result.model.predict(x_test) == np.array(list("abcde"))[y_test % 5])
    assert result.model.classes == list("abcde")
    assert accuracy > 0.5
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_a_resumed_fine_tuning_matches_an_uninterrupted_one(digits, parent):
    _, (x, y), _ = digits
    training = {**SLOW, "epochs": 6, "optimizer": {"name": "adam"}}
    whole = train(x, y, NETWORK, training, init_from=parent)
    first = Trainer(x, y, NETWORK, {**training, "epochs": 3}, init_from=parent)
    first.fit()
    resumed = train(x, y, NETWORK, training, init_from=parent, resume_from=first.checkpoint())
    for (w1, b1), (w2, b2) in zip(whole.model.weights, resumed.model.weights, strict=True):
        assert np.array_equal(w1, w2) and np.array_equal(b1, b2)


@pytest.mark.parametrize(
    ("layers", "replace_output", "path", "message"),
    [
        (
            [{"units": 16, "activation": "relu"}, {"units": 10, "activation": "softmax"}],
            False,
            "network.layers[0]",
            "has 16 relu units; the model to fine-tune has 32 relu units there",
        ),
        (
            [{"units": 32, "activation": "tanh"}, {"units": 10, "activation": "softmax"}],
            True,
            "network.layers[0]",
            "has 32 tanh units",
        ),
        (
            [{"units": 10, "activation": "softmax"}],
            False,
            "network.layers",
            "the network has 1 layers; the model to fine-tune has 2",
        ),
        (
            [{"units": 32, "activation": "relu"}, {"units": 10, "activation": "sigmoid"}],
            False,
            "network.layers[1]",
            "(or set replace_output)",
        ),
    ],
)
def test_layers_must_match_the_models(digits, parent, layers, replace_output, path, message):
    _, (x, y), _ = digits
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        train(
            x,
            y,
            {**NETWORK, "layers": layers},
            {"epochs": 1},
            init_from=parent,
            replace_output=replace_output,
        )
    assert raised.value.path == path


def test_other_classes_need_replace_output(digits, parent):
    _, (x, y), _ = digits
    with pytest.raises(SpecError, match="set replace_output") as raised:
        train(x, (y + 1) % 10 + 10, NETWORK, {"epochs": 1}, init_from=parent)
    assert raised.value.path == "network.init_from"


def test_the_parents_standardisation_is_kept(digits, parent):
    _, (x, y), _ = digits
    with pytest.raises(SpecError, match="must be true: a fine-tuned model keeps") as raised:
        train(x, y, NETWORK, {"epochs": 1, "standardize": False}, init_from=parent)
    assert raised.value.path == "training.standardize"


def test_a_float32_network_starts_from_a_float64_model(digits, parent):
    _, (x, y), (x_test, _) = digits
    child = train(x, y, {**NETWORK, "dtype": "float32"}, {"epochs": 0}, init_from=parent).model
    assert child.weights[0][0].dtype == np.float32
    np.testing.assert_allclose(child.forward(x_test), parent.forward(x_test), atol=1e-5)
    assert isinstance(Model.from_bytes(child.to_bytes()), Model)
