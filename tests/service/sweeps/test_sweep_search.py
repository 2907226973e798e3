"""A sweep's search expanded into trials: paths into the body, grids, distributions, seeds."""

import math

import pytest

from model_core import MAX_INT32
from service.specs_json import parse_path, trial_body
from service.sweeps.search import grid, random_trials
from service.vocabulary import DataError

BASE = {
    "network": {
        "layers": [{"units": 8, "activation": "relu"}, {"units": 2, "activation": "softmax"}]
    },
    "training": {"epochs": 5, "optimizer": "adam"},
}


def test_a_path_reads_names_and_list_indexes():
    assert parse_path("network.layers[1].units") == ["network", "layers", 1, "units"]
    assert parse_path("training.optimizer.learning_rate") == [
        "training",
        "optimizer",
        "learning_rate",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "dataset_id",
        "network",
        "training..l2",
        "network.layers[x].units",
        "[0].units",
        # A sweep's trials start from random weights: a job's own are kept apart, not searched.
        "network.initial_weights",
        "network.initial_weights[0].W",
    ],
)
def test_a_path_outside_network_and_training_or_malformed_is_refused(path):
    with pytest.raises(DataError) as error:
        parse_path(path)
    assert error.value.path == f"search.parameters.{path}"


def test_setting_a_path_copies_the_body_and_makes_missing_objects():
    body = trial_body(BASE, {"network.layers[0].units": 64, "training.early_stopping.patience": 3})
    assert body["network"]["layers"][0]["units"] == 64
    assert body["training"]["early_stopping"] == {"patience": 3}
    assert BASE["network"]["layers"][0]["units"] == 8


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("network.layers[5].units", r"no item \[5\]"),
        ("training.optimizer.learning_rate", "no object"),
    ],
)
def test_a_path_the_body_does_not_have_names_the_parameter(path, message):
    with pytest.raises(DataError, match=message) as error:
        trial_body(BASE, {path: 1})
    assert error.value.path == f"search.parameters.{path}"


def test_a_grid_is_every_combination_the_last_parameter_fastest():
    trials = grid({"training.l2": [0.0, 0.1], "network.layers[0].units": [4, 8, 16]}, 100)
    assert trials == [
        {"training.l2": l2, "network.layers[0].units": units}
        for l2 in (0.0, 0.1)
        for units in (4, 8, 16)
    ]


def test_a_grid_larger_than_the_limit_is_refused_with_its_size():
    with pytest.raises(DataError, match="grid of 6 trials; the limit is 5") as error:
        grid({"training.l2": [0.0, 0.1], "network.layers[0].units": [4, 8, 16]}, 5)
    assert error.value.path == "search.parameters"


@pytest.mark.parametrize("spec", [[], {"uniform": [0, 1]}, 3])
def test_a_grid_takes_non_empty_lists_only(spec):
    with pytest.raises(DataError) as error:
        grid({"training.l2": spec}, 100)
    assert error.value.path == "search.parameters.training.l2"


def test_random_draws_each_distribution_within_its_bounds():
    parameters = {
        "training.optimizer.learning_rate": {"loguniform": [1e-4, 1e-1]},
        "training.l2": {"uniform": [0.0, 0.5]},
        "network.layers[0].units": {"int": [4, 6]},
        "network.layers[0].activation": ["relu", "tanh"],
        "training.batch_size": {"choice": [16, "full"]},
    }
    trials = random_trials(parameters, 200, seed=1)
    rates = [trial["training.optimizer.learning_rate"] for trial in trials]
    assert all(1e-4 <= rate <= 1e-1 for rate in rates)
    # Log-uniform: as many draws below the geometric middle (1e-2.5) as above it, roughly.
    below = sum(math.log10(rate) < -2.5 for rate in rates)
    assert 70 < below < 130
    assert all(0.0 <= trial["training.l2"] <= 0.5 for trial in trials)
    assert {trial["network.layers[0].units"] for trial in trials} == {4, 5, 6}
    assert {trial["network.layers[0].activation"] for trial in trials} == {"relu", "tanh"}
    assert {trial["training.batch_size"] for trial in trials} == {16, "full"}
    assert all(isinstance(trial["network.layers[0].units"], int) for trial in trials)


def test_the_same_seed_draws_the_same_trials_and_another_seed_others():
    parameters = {"training.l2": {"uniform": [0.0, 1.0]}, "training.epochs": {"int": [1, 100]}}
    assert random_trials(parameters, 10, seed=7) == random_trials(parameters, 10, seed=7)
    assert random_trials(parameters, 10, seed=7) != random_trials(parameters, 10, seed=8)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"loguniform": [0, 1]}, "search.parameters.training.l2.loguniform"),
        ({"uniform": [1, 0]}, "search.parameters.training.l2.uniform"),
        ({"int": [0.5, 3]}, "search.parameters.training.l2.int"),
        ({"normal": [0, 1]}, "search.parameters.training.l2"),
        ({"choice": []}, "search.parameters.training.l2.choice"),
        ("0.1", "search.parameters.training.l2"),
        # Bounds beyond a float's exact integers, or an int parameter beyond MAX_INT32.
        ({"int": [0, 2**70]}, "search.parameters.training.l2.int"),
        ({"int": [-(2**31), 0]}, "search.parameters.training.l2.int"),
        ({"uniform": [0, 10**400]}, "search.parameters.training.l2.uniform"),
        ({"uniform": [-1e300, 0.0]}, "search.parameters.training.l2.uniform"),
        ({"loguniform": [1, 2**54]}, "search.parameters.training.l2.loguniform"),
    ],
)
def test_a_bad_distribution_names_its_field(spec, field):
    with pytest.raises(DataError) as error:
        random_trials({"training.l2": spec}, 3, seed=1)
    assert error.value.path == field


def test_bounds_at_their_limits_are_drawn():
    drawn = random_trials(
        {"training.seed": {"int": [-MAX_INT32, MAX_INT32]}, "training.l2": {"uniform": [0, 2**53]}},
        5,
        seed=1,
    )
    for trial in drawn:
        assert -MAX_INT32 <= trial["training.seed"] <= MAX_INT32
        assert 0 <= trial["training.l2"] <= 2**53
