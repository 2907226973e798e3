"""Fine-tuning: a network that starts from a trained model's weights and standardisation.

The network's layers must be the model's; with ``replace_output`` only its hidden layers must
be, and the output layer starts fresh (for data with other classes or targets). The model's
standardisation is kept as it is, not fitted again, since its first layer's weights were learnt
on inputs standardised that way. The optimizer starts fresh: its moments are not part of a model.
"""

from dataclasses import dataclass

import numpy as np

from model_core.errors import SpecError
from model_core.network import Model


def _shown(layer: dict) -> str:
    return f"{layer['units']} {layer['activation']} units"


def check_same_layers(model_layers: list[dict], layers: list[dict], replace_output: bool) -> None:
    """``layers`` are ``model_layers``, but for the output layer with ``replace_output``;
    raises ``SpecError`` naming the first layer that differs."""
    if len(layers) != len(model_layers):
        first = min(len(layers), len(model_layers))
        raise SpecError(
            "network",
            f"layers[{first}]" if first < len(layers) else "layers",
            f"the network has {len(layers)} layers; the model to fine-tune has {len(model_layers)}",
        )
    compared = len(layers) - 1 if replace_output else len(layers)
    for index in range(compared):
        mine, theirs = layers[index], model_layers[index]
        if (mine["units"], mine["activation"]) != (theirs["units"], theirs["activation"]):
            raise SpecError(
                "network",
                f"layers[{index}]",
                f"has {_shown(mine)}; the model to fine-tune has {_shown(theirs)} there"
                + ("" if replace_output or index < compared - 1 else " (or set replace_output)"),
            )


@dataclass(frozen=True)
class Parent:
    """What a network that starts from a trained model must agree with: the model's task,
    layers, classes (None for regression), whether it standardises, and its input width."""

    task: str
    layers: list[dict]
    classes: list | None
    standardized: bool
    n_features: int

    @classmethod
    def of(cls, model: Model) -> "Parent":
        standardized = model.mean is not None
        layers = model.network["layers"]
        return cls(model.task, layers, model.classes, standardized, model.n_features)


def check_fine_tunable(
    parent: Parent,
    network: dict,
    training: dict,
    task: str,
    classes: list | None,
    n_features: int,
    replace_output: bool,
) -> None:
    """The model can start this network on this data: same task, input width, layers, classes
    (unless the output layer is replaced) and standardisation."""
    if parent.task != task:
        raise SpecError("network", "init_from", f"is a {parent.task} model; the data is {task}")
    if parent.n_features != n_features:
        raise SpecError(
            "network",
            "init_from",
            f"the model takes {parent.n_features} features; the data has {n_features}",
        )
    check_same_layers(parent.layers, network["layers"], replace_output)
    same_classes = parent.classes is not None and list(parent.classes) == list(classes)
    if task == "classification" and not replace_output and not same_classes:
        raise SpecError(
            "network",
            "init_from",
            f"the model predicts the classes {parent.classes}; the data has {classes}:"
            " set replace_output to train a new output layer",
        )
    standardized = parent.standardized
    if training["standardize"] != standardized:
        raise SpecError(
            "training",
            "standardize",
            f"must be {str(standardized).lower()}: a fine-tuned model keeps the standardisation"
            " of the model it starts from",
        )


def starting_weights(
    model: Model, fresh: list[tuple[np.ndarray, np.ndarray]], dtype, replace_output: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The model's weights in ``dtype``; with ``replace_output``, the fresh output layer of
    ``fresh`` (every layer's newly initialised weights) instead of the model's."""
    weights = [(w.astype(dtype), b.astype(dtype)) for w, b in model.weights]
    if replace_output:
        weights[-1] = fresh[-1]
    return weights


def model_standardization(model: Model, dtype) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The model's (mean, scale) in ``dtype``, or (None, None) when it does not standardise."""
    if model.mean is None:
        return None, None
    return model.mean.astype(dtype), model.scale.astype(dtype)
