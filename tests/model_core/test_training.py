"""What a user of scikit-learn's MLP or of Keras expects of training."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split

from model_core import Trainer, TrainingDiverged, train
from model_core.checkpoints import CHECKPOINT_FORMAT, read_checkpoint
from model_core.preprocessing import feature_statistics
from model_core.serialization import pack
from model_core.splits import training_rows

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_Y = np.array([0, 1, 1, 0])
DIGITS_NETWORK = {
    "layers": [{"units": 64, "activation": "relu"}, {"units": 10, "activation": "softmax"}]
}
DIGITS_TRAINING = {
    "epochs": 40,
    "batch_size": 32,
    "seed": 42,
    "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
}


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, random_state=42)


def test_xor_learned_by_a_small_sigmoid_network():
    result = train(
        XOR_X,
        XOR_Y,
        {"layers": [{"units": 3, "activation": "sigmoid"}, {"units": 1, "activation": "sigmoid"}]},
        {
            "epochs": 2000,
            "batch_size": 4,
            "seed": 0,
            "standardize": False,
            "optimizer": {"name": "sgd", "learning_rate": 2.0, "momentum": 0.9},
        },
    )
    assert list(result.model.predict(XOR_X)) == [0, 1, 1, 0]
    assert result.history[-1]["train_accuracy"] == 1.0


def test_digits_reach_97_percent_on_450_held_out_rows(digits):
    x_train, x_test, y_train, y_test = digits
    assert len(x_test) == 450
    result = train(x_train, y_train, DIGITS_NETWORK, DIGITS_TRAINING)
    accuracy = np.mean(result.model.predict(x_test) == y_test)
    assert accuracy >= 0.97


def test_adam_with_validation_split_and_early_stopping(digits):
    x_train, x_test, y_train, y_test = digits
    training = {
        "epochs": 200,
        "seed": 1,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "validation_split": 0.2,
        "early_stopping": {"patience": 5},
    }
    result = train(x_train, y_train, DIGITS_NETWORK, training)
    assert result.stopped_early and len(result.history) < 200
    val_losses = [record["val_loss"] for record in result.history]
    assert result.best_epoch == 1 + int(np.argmin(val_losses))
    assert all(record["val_accuracy"] is not None for record in result.history)
    assert np.mean(result.model.predict(x_test) == y_test) >= 0.95


def test_same_seed_gives_identical_weights_and_history(digits):
    x_train, _, y_train, _ = digits
    training = {**DIGITS_TRAINING, "epochs": 3}
    first = train(x_train, y_train, DIGITS_NETWORK, training)
    second = train(x_train, y_train, DIGITS_NETWORK, training)
    for (w1, b1), (w2, b2) in zip(first.model.weights, second.model.weights, strict=True):
        assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
    assert without_seconds(first.history) == without_seconds(second.history)
    other = train(x_train, y_train, DIGITS_NETWORK, {**training, "seed": 43})
    assert not np.array_equal(first.model.weights[0][0], other.model.weights[0][0])


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


# The data travel as .npz: the fresh process needs model_core and numpy only (importing
# scikit-learn there to load the digits again took a second per run).
RESUME_SCRIPT = textwrap.dedent("""
    import sys, json
    import numpy as np
    from model_core import train
    network, training = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    with np.load(sys.argv[5], allow_pickle=False) as data:
        x, y = data["x"], data["y"]
    checkpoint = open(sys.argv[3], "rb").read()
    result = train(x, y, network, training, resume_from=checkpoint)
    np.savez(sys.argv[4], *[a for pair in result.model.weights for a in pair])
    print(json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in result.history]))
""")


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
        {"name": "adam", "learning_rate": 0.003},
    ],
)
def test_resume_in_a_fresh_process_matches_an_uninterrupted_run(tmp_path, optimizer):
    import json

    x, y = load_digits(return_X_y=True)
    training = {
        "epochs": 6,
        "seed": 5,
        "optimizer": optimizer,
        "validation_split": 0.1,
        "early_stopping": {"patience": 50},
    }
    uninterrupted = train(x, y, DIGITS_NETWORK, training)

    saved = {}
    trainer = Trainer(x, y, DIGITS_NETWORK, training)

    def stop_after_three(record):
        if record["epoch"] == 3:
            saved["checkpoint"] = trainer.checkpoint()
            return True
        return False

    assert trainer.fit(stop_after_three).stopped_by_callback
    (tmp_path / "checkpoint.npz").write_bytes(saved["checkpoint"])
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RESUME_SCRIPT,
            json.dumps(DIGITS_NETWORK),
            json.dumps(training),
            str(tmp_path / "checkpoint.npz"),
            str(tmp_path / "weights.npz"),
            str(tmp_path / "digits.npz"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    resumed = np.load(tmp_path / "weights.npz")
    expected = [a for pair in uninterrupted.model.weights for a in pair]
    for i, array in enumerate(expected):
        assert np.array_equal(resumed[f"arr_{i}"], array)
    assert json.loads(done.stdout) == without_seconds(uninterrupted.history)


def test_checkpoint_from_another_spec_is_refused():
    trainer = Trainer(
        XOR_X, XOR_Y, {"layers": [{"units": 2, "activation": "softmax"}]}, {"epochs": 2, "seed": 1}
    )
    trainer.fit()
    with pytest.raises(Exception, match="resume_from: the checkpoint was made with a different"):
        Trainer(
            XOR_X,
            XOR_Y,
            {"layers": [{"units": 2, "activation": "softmax"}]},
            {"epochs": 2, "seed": 2},
            resume_from=trainer.checkpoint(),
        )


def test_a_checkpoint_from_before_a_new_spec_field_resumes_at_its_default():
    """A checkpoint written before ``training.class_weight`` existed has no such key: the run,
    at the default (None), resumes it."""
    network = {"layers": [{"units": 2, "activation": "softmax"}]}
    trainer = Trainer(XOR_X, XOR_Y, network, {"epochs": 2, "seed": 1})
    trainer.fit()
    trainer.training = {k: v for k, v in trainer.training.items() if k != "class_weight"}
    resumed = train(
        XOR_X, XOR_Y, network, {"epochs": 3, "seed": 1}, resume_from=trainer.checkpoint()
    )
    assert len(resumed.history) == 3
    with pytest.raises(Exception, match="resume_from: the checkpoint was made with a different"):
        train(
            XOR_X,
            XOR_Y,
            network,
            {"epochs": 3, "seed": 1, "class_weight": "balanced"},
            resume_from=trainer.checkpoint(),
        )


def test_checkpoint_made_before_a_training_field_existed_resumes():
    """A checkpoint without the fields issue 26 added (schedule, warm-up, clipping, a layer's
    dropout, the dropout rng) was made by a run without them: a job resumes across the
    upgrade."""
    network = {
        "layers": [{"units": 3, "activation": "tanh"}, {"units": 2, "activation": "softmax"}]
    }
    trainer = Trainer(XOR_X, XOR_Y, network, {"epochs": 2, "seed": 1})
    trainer.fit()
    header, arrays = read_checkpoint(trainer.checkpoint())
    for key in ("schedule", "warmup_epochs", "clip_norm"):
        del header["training"][key]
    for layer in header["network"]["layers"]:
        del layer["dropout"]
    del header["dropout_rng"]
    older = pack(CHECKPOINT_FORMAT, header, arrays)
    resumed = Trainer(XOR_X, XOR_Y, network, {"epochs": 3, "seed": 1}, resume_from=older)
    assert resumed.epoch == 2 and len(resumed.fit().history) == 3


def test_callback_stops_training_cleanly():
    result = train(
        XOR_X,
        XOR_Y,
        {"layers": [{"units": 2, "activation": "softmax"}]},
        {"epochs": 50},
        on_epoch=lambda record: record["epoch"] == 4,
    )
    assert result.stopped_by_callback and len(result.history) == 4
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]


def test_divergence_raises_naming_the_epoch():
    x = np.random.default_rng(0).normal(size=(64, 3)) * 1e3
    y = x @ np.array([1.0, -2.0, 3.0])
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch \d+") as raised:
        train(
            x,
            y,
            {"layers": [{"units": 8, "activation": "relu"}, {"units": 1, "activation": "linear"}]},
            {
                "epochs": 50,
                "standardize": False,
                "optimizer": {"name": "sgd", "learning_rate": 10.0},
            },
            task="regression",
        )
    assert raised.value.epoch >= 1


def test_string_labels_come_back_as_strings():
    iris = load_iris()
    labels = iris.target_names[iris.target]
    result = train(
        iris.data,
        labels,
        {"layers": [{"units": 16, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]},
        {
            "epochs": 60,
            "seed": 0,
            "batch_size": 16,
            "optimizer": {"name": "adam", "learning_rate": 0.01},
        },
    )
    assert result.model.classes == ["setosa", "versicolor", "virginica"]
    predicted = result.model.predict(iris.data)
    assert predicted.dtype.kind == "U" and np.mean(predicted == labels) > 0.95
    probabilities = result.model.predict_proba(iris.data[:5])
    assert probabilities.shape == (5, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_regression_fits_a_smooth_function():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(512, 2))
    y = np.column_stack([np.sin(x[:, 0]) + x[:, 1] ** 2, x[:, 0] * x[:, 1]])
    result = train(
        x,
        y,
        {
            "layers": [{"units": 32, "activation": "tanh"}, {"units": 2, "activation": "linear"}],
            "dtype": "float64",
        },
        {
            "epochs": 300,
            "batch_size": 64,
            "seed": 0,
            "optimizer": {"name": "adam", "learning_rate": 0.01},
        },
        task="regression",
    )
    predicted = result.model.predict(x)
    assert predicted.shape == (512, 2)
    assert np.mean((predicted - y) ** 2) < 0.05 * np.var(y)


def test_full_batch_gradient_descent_is_one_step_per_epoch():
    result = train(
        XOR_X,
        XOR_Y,
        {"layers": [{"units": 2, "activation": "softmax"}]},
        {"epochs": 3, "batch_size": "full", "shuffle": False, "seed": 0},
    )
    assert len(result.history) == 3


def test_explicit_validation_data_is_scored_with_training_classes(digits):
    x_train, x_test, y_train, y_test = digits
    result = train(
        x_train,
        y_train,
        DIGITS_NETWORK,
        {**DIGITS_TRAINING, "epochs": 5},
        validation_data=(x_test[y_test < 3], y_test[y_test < 3]),
    )
    assert result.history[-1]["val_accuracy"] > 0.8


def test_training_does_not_modify_the_callers_data(digits):
    x_train, _, y_train, _ = digits
    x_before, y_before = x_train.copy(), y_train.copy()
    train(x_train, y_train, DIGITS_NETWORK, {**DIGITS_TRAINING, "epochs": 1})
    assert np.array_equal(x_train, x_before) and np.array_equal(y_train, y_before)


@pytest.mark.parametrize("validation_split", [0.0, 0.3])
def test_training_rows_are_the_rows_the_trainer_trained_on(validation_split):
    """A stored model's input profile is computed again over the same rows (migration 0011)."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(50, 3)), rng.integers(0, 2, 50)
    network = {"layers": [{"units": 2, "activation": "softmax"}]}
    training = {"epochs": 1, "seed": 21, "validation_split": validation_split}
    trainer = Trainer(x, y, network, training)
    np.testing.assert_array_equal(training_rows(50, 21, validation_split), trainer.train_rows)
    statistics = feature_statistics(x, trainer.train_rows)
    rows = x[trainer.train_rows]
    for name, expected in [("min", rows.min(0)), ("max", rows.max(0)), ("std", rows.std(0))]:
        np.testing.assert_allclose(statistics[name], expected, rtol=1e-12)
    np.testing.assert_allclose(statistics["mean"], rows.mean(0), rtol=1e-12)
