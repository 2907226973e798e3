"""What a job will cost in memory, computed from what it asks before anything is stored.

``MAX_PARAMETERS`` bounds the weights alone; a 60k-parameter network with a 20,000-unit layer
fits it and still allocates batch x 20,000 activations per layer, and full-batch training rows x
width. A job's working set, in the network's dtype:

- the data set: rows x (features + outputs), and with row weights 8 bytes a row as stored and
  the rows' weights in the network's dtype;
- the parameters, their gradients, the optimizer's slots (Adam 2, SGD with momentum 1), the
  best weights early stopping keeps, the trained model's own copy at the end, and the model a
  fine-tuning job starts from;
- the activations and their errors: 2 x batch rows x the units of every layer (``full``: every
  row), and 2 more (the mask and the masked activations) for each layer with dropout.

Each term names the request field that makes it large, so that a refusal says what to change.
"""

from collections.abc import Callable

import numpy as np

from service.settings import Settings
from service.vocabulary import DataError

MIB = 1024 * 1024

# Arrays the optimizer keeps per parameter, from its resolved spec.
OPTIMIZER_SLOTS: dict[str, Callable[[dict], int]] = {
    "sgd": lambda spec: 1 if spec["momentum"] else 0,
    "adam": lambda _spec: 2,
}


def check_network_shape(network: dict, settings: Settings) -> None:
    """At most ``MAX_LAYERS`` layers of at most ``MAX_LAYER_WIDTH`` units each."""
    layers = network["layers"]
    if len(layers) > settings.max_layers:
        raise DataError(
            "network.layers",
            f"has {len(layers)} layers; the limit is {settings.max_layers} (MAX_LAYERS)",
        )
    for index, layer in enumerate(layers):
        if layer["units"] > settings.max_layer_width:
            raise DataError(
                f"network.layers[{index}].units",
                f"is {layer['units']}; the limit is {settings.max_layer_width} (MAX_LAYER_WIDTH)",
            )


def working_set(
    network: dict,
    training: dict,
    n_samples: int,
    n_features: int,
    n_parameters: int,
    *,
    weighted: bool = False,
    fine_tuning: bool = False,
) -> dict[str, int]:
    """Bytes of each term of the job's working set, keyed by the field that sets it; the
    targets are as wide as the output layer (one-hot for a classifier)."""
    itemsize = np.dtype(network["dtype"]).itemsize
    optimizer = training["optimizer"]
    # weights, gradients, the optimizer's slots, and the trained model's own copy at the end
    copies = 3 + OPTIMIZER_SLOTS[optimizer["name"]](optimizer)
    copies += bool(training["early_stopping"]) + fine_tuning
    row_weights = n_samples * (8 + itemsize) if weighted else 0
    batch = training["batch_size"]
    batch_rows = n_samples if batch == "full" else min(batch, n_samples)
    layers = network["layers"]
    units = [layer["units"] for layer in layers]
    per_row = sum(units) + sum(layer["units"] for layer in layers if layer["dropout"])
    return {
        "dataset_id": n_samples * (n_features + units[-1]) * itemsize + row_weights,
        "network.layers": n_parameters * copies * itemsize,
        "training.batch_size": 2 * batch_rows * per_row * itemsize,
    }


def check_job_memory(costs: dict[str, int], max_job_memory: int) -> None:
    """A 422 naming the largest term when the whole is over ``MAX_JOB_MEMORY``."""
    total = sum(costs.values())
    if total <= max_job_memory:
        return
    field = max(costs, key=costs.__getitem__)
    parts = ", ".join(f"{name} {size / MIB:.0f} MiB" for name, size in costs.items())
    raise DataError(
        field,
        f"the job would need about {total / MIB:.0f} MiB ({parts}); the limit is"
        f" {max_job_memory / MIB:.0f} MiB (MAX_JOB_MEMORY): lower {field}",
    )
