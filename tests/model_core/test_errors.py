"""Every invalid spec or data set raises SpecError with a message that names the field."""

import re

import numpy as np
import pytest

from model_core import MAX_INT32, ModelCoreError, SpecError, resolve_spec, train
from model_core.preprocessing import CHUNK_ROWS, check_finite

X = np.random.default_rng(0).normal(size=(20, 4))
Y = np.arange(20) % 3
GOOD = {"layers": [{"units": 8, "activation": "relu"}, {"units": 3, "activation": "softmax"}]}


def layers(*pairs):
    return {"layers": [{"units": units, "activation": name} for units, name in pairs]}


@pytest.mark.parametrize(
    ("network", "training", "path", "message"),
    [
        (
            layers((8, "sigmod"), (3, "softmax")),
            {},
            "network.layers[0].activation",
            "layers[0].activation: unknown 'sigmod'",
        ),
        (
            layers((8, "softmax"), (3, "softmax")),
            {},
            "network.layers[0].activation",
            "softmax is only allowed on the last layer",
        ),
        (
            {**layers((8, "relu"), (3, "sigmoid")), "loss": "cross_entropy"},
            {},
            "network.loss",
            "cross_entropy needs a softmax output layer",
        ),
        (
            layers((8, "relu"), (10, "softmax")),
            {},
            "network.layers[1].units",
            "output layer has 10 units but the data has 3 classes",
        ),
        (layers((0, "relu"), (3, "softmax")), {}, "network.layers[0].units", "must be >= 1"),
        ({"layers": []}, {}, "network.layers", "non-empty"),
        ({"layers": [{"units": 3}]}, {}, "network.layers[0].activation", "is required"),
        ({**GOOD, "los": "mse"}, {}, "network.los", "unknown field"),
        ({**GOOD, "loss": "hinge"}, {}, "network.loss", "unknown 'hinge'"),
        ({**GOOD, "init": "zeros"}, {}, "network.init", "unknown 'zeros'"),
        ({**GOOD, "dtype": "float16"}, {}, "network.dtype", "unknown 'float16'"),
        (
            {
                **GOOD,
                "initial_weights": [
                    {"W": [[0.0] * 8] * 3, "b": [0.0] * 8},
                    {"W": [[0.0] * 3] * 8, "b": [0.0] * 3},
                ],
            },
            {},
            "network.initial_weights[0].W",
            "has shape (3, 8), expected (4, 8)",
        ),
        (GOOD, {"epochs": 0}, "training.epochs", "must be >= 1"),
        (GOOD, {"epochs": 2.5}, "training.epochs", "must be an integer"),
        (GOOD, {"batch_size": "half"}, "training.batch_size", "must be an integer or 'full'"),
        (GOOD, {"optimizer": {"name": "rmsprop"}}, "training.optimizer.name", "unknown 'rmsprop'"),
        (
            GOOD,
            {"optimizer": {"name": "sgd", "learning_rate": -1}},
            "training.optimizer.learning_rate",
            "must be > 0.0",
        ),
        (
            GOOD,
            {"optimizer": {"name": "adam", "momentum": 0.9}},
            "training.optimizer.momentum",
            "unknown field",
        ),
        (
            GOOD,
            {"optimizer": {"name": "sgd", "momentum": 1.5}},
            "training.optimizer.momentum",
            "must be >= 0.0 and < 1.0",
        ),
        (GOOD, {"validation_split": 1.0}, "training.validation_split", "must be >= 0.0 and < 1.0"),
        (GOOD, {"early_stopping": {"patience": 0}}, "training.early_stopping.patience", ">= 1"),
        (GOOD, {"shuffle": "yes"}, "training.shuffle", "must be true or false"),
        (GOOD, {"l2": float("nan")}, "training.l2", "must be >= 0.0"),
        (GOOD, {"schedule": {"gamma": 0.5}}, "training.schedule.name", "is required"),
        (GOOD, {"schedule": {"name": "linear"}}, "training.schedule.name", "unknown 'linear'"),
        (GOOD, {"schedule": "cosine"}, "training.schedule", "must be an object"),
        (
            GOOD,
            {"schedule": {"name": "step", "gamma": 0.5}},
            "training.schedule.step_size",
            "is required by the step schedule",
        ),
        (
            GOOD,
            {"schedule": {"name": "exponential", "gamma": 0.9, "t_max": 3}},
            "training.schedule.t_max",
            "unknown field",
        ),
        (
            GOOD,
            {"schedule": {"name": "exponential", "gamma": 0.0}},
            "training.schedule.gamma",
            "must be > 0.0 and <= 1.0",
        ),
        (
            GOOD,
            {"schedule": {"name": "cosine", "t_max": 0}},
            "training.schedule.t_max",
            "must be >= 1",
        ),
        (
            GOOD,
            {"schedule": {"name": "plateau", "factor": 1.0}},
            "training.schedule.factor",
            "must be > 0.0 and < 1.0",
        ),
        (
            GOOD,
            {"schedule": {"name": "plateau", "patience": -1}},
            "training.schedule.patience",
            "must be >= 0",
        ),
        (
            GOOD,
            {
                "optimizer": {"name": "sgd", "decay": 0.1},
                "schedule": {"name": "exponential", "gamma": 0.9},
            },
            "training.schedule",
            "replaces optimizer.decay",
        ),
        (GOOD, {"warmup_epochs": -1}, "training.warmup_epochs", "must be >= 0"),
        (GOOD, {"warmup_epochs": 1.5}, "training.warmup_epochs", "must be an integer"),
        (GOOD, {"clip_norm": 0}, "training.clip_norm", "must be > 0.0"),
        (GOOD, {"clip_norm": float("inf")}, "training.clip_norm", "must be > 0.0"),
    ],
)
def test_bad_spec_names_the_field(network, training, path, message):
    with pytest.raises(SpecError, match=re.escape(message)) as raised:
        train(X, Y, network, training)
    assert raised.value.path == path
    assert isinstance(raised.value, ModelCoreError)


def test_nan_in_x_names_the_row():
    x = X.copy()
    x[7, 2] = np.nan
    with pytest.raises(SpecError, match="X contains NaN at row 7"):
        train(x, Y, GOOD)


def test_infinity_in_x_names_the_row():
    x = X.copy()
    x[3, 0] = np.inf
    with pytest.raises(SpecError, match="X contains infinity at row 3"):
        train(x, Y, GOOD)


def test_finite_values_whose_sum_overflows_pass_the_check():
    x = np.full((20, 4), np.finfo(np.float32).max / 2, np.float32)
    check_finite(x, "X")


@pytest.mark.parametrize(("value", "what"), [(np.nan, "NaN"), (-np.inf, "infinity")])
def test_a_bad_value_among_values_whose_sum_overflows_is_found(value, what):
    x = np.full((CHUNK_ROWS + 10, 3), np.finfo(np.float64).max / 2)
    x[CHUNK_ROWS + 4, 1] = value
    with pytest.raises(SpecError, match=f"X contains {what} at row {CHUNK_ROWS + 4}, column 1"):
        check_finite(x, "X")


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((0, 4)), [], "X: is empty"),
        ([[1.0, 2.0], [3.0]], [0, 1], "X: must be a 2-D array of numbers"),
        ([["a", "b"]], [0], "X: must be a 2-D array of numbers"),
        (X, Y[:10], "y has 10 rows but X has 20"),
        (X, np.zeros(20), "classification needs at least 2 classes"),
    ],
)
def test_bad_data_names_the_field(x, y, message):
    with pytest.raises(SpecError, match=message):
        train(x, y, GOOD)


def test_prediction_width_is_checked():
    model = train(X, Y, GOOD, {"epochs": 1}).model
    with pytest.raises(SpecError, match="X has 3 columns, the network expects 4"):
        model.predict(np.zeros((2, 3)))


def test_regression_loss_and_width_checks():
    with pytest.raises(SpecError, match="cross_entropy is for classification"):
        train(X, X[:, 0], {**layers((3, "softmax")), "loss": "cross_entropy"}, task="regression")
    with pytest.raises(SpecError, match="output layer has 2 units but the data has 1 target"):
        train(X, X[:, 0], layers((2, "linear")), task="regression")
    with pytest.raises(SpecError, match="task: unknown 'clustering'"):
        train(X, Y, GOOD, task="clustering")


def test_resolve_spec_fills_defaults_and_warns():
    resolved = resolve_spec(
        GOOD,
        {"early_stopping": {}, "batch_size": 64},
        task="classification",
        n_features=4,
        n_outputs=3,
        n_samples=20,
    )
    assert resolved.network["loss"] == "cross_entropy"
    assert resolved.network["init"] == "he"
    assert resolved.network["dtype"] == "float32"
    assert resolved.training["optimizer"] == {
        "name": "sgd",
        "learning_rate": 0.01,
        "momentum": 0.0,
        "nesterov": False,
        "decay": 0.0,
    }
    assert resolved.training["early_stopping"] == {
        "patience": 10,
        "min_delta": 1e-4,
        "restore_best": True,
    }
    assert any("batch_size" in warning for warning in resolved.warnings)
    assert any("early_stopping" in warning for warning in resolved.warnings)


def test_a_warm_up_as_long_as_the_run_is_warned_about():
    resolved = resolve_spec(
        GOOD, {"epochs": 5, "warmup_epochs": 5}, task="classification", n_features=4, n_outputs=3
    )
    assert resolved.warnings == [
        "training.warmup_epochs 5 is not below the 5 epochs: the rate never reaches"
        " optimizer.learning_rate"
    ]


@pytest.mark.parametrize(
    ("network", "training", "path"),
    [
        (layers((8, ["tanh"]), (3, "softmax")), {}, "network.layers[0].activation"),
        ({**GOOD, "loss": ["mse"]}, {}, "network.loss"),
        ({**GOOD, "init": {}}, {}, "network.init"),
        (GOOD, {"optimizer": {"name": [1]}}, "training.optimizer.name"),
        (layers((10**20, "relu"), (3, "softmax")), {}, "network.layers[0].units"),
        (GOOD, {"epochs": 10**30}, "training.epochs"),
        (GOOD, {"seed": 2**40}, "training.seed"),
    ],
)
def test_values_of_the_wrong_shape_or_size_name_the_field(network, training, path):
    with pytest.raises(SpecError) as raised:
        train(X, Y, network, training)
    assert raised.value.path == path


def test_resolved_optimizers_list_their_fields_in_a_fixed_order():
    def resolved(name):
        spec = resolve_spec(
            GOOD, {"optimizer": name}, task="classification", n_features=4, n_outputs=3
        )
        return list(spec.training["optimizer"])

    assert resolved("sgd") == ["name", "learning_rate", "momentum", "nesterov", "decay"]
    assert resolved("adam") == ["name", "learning_rate", "beta1", "beta2", "epsilon", "decay"]


def test_counts_stop_at_the_largest_32_bit_integer():
    assert MAX_INT32 == 2**31 - 1
    spec = resolve_spec(
        GOOD, {"epochs": MAX_INT32}, task="classification", n_features=4, n_outputs=3
    )
    assert spec.training["epochs"] == MAX_INT32
    with pytest.raises(SpecError, match=f"<= {MAX_INT32}, got {MAX_INT32 + 1}"):
        resolve_spec(
            GOOD, {"epochs": MAX_INT32 + 1}, task="classification", n_features=4, n_outputs=3
        )
