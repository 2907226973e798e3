"""Fine-tuning a registered model: ``network.init_from`` (any reference of the tenant's
registry) resolved to a model id when the job is submitted, so that moving an alias later changes
nothing; what the body leaves out of the specs taken from that model; and the checks model_core
makes when it trains, made before anything is stored.

The stored job keeps ``init_from`` as the model id and ``replace_output`` in its network spec
(``SERVICE_NETWORK_FIELDS``); the worker reads that model's weights and standardisation, and the
trained model records it as its ``parent_model_id``.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from model_core.fine_tuning import Parent, check_fine_tunable
from service.db import registry
from service.db.models import Dataset, TrainedModel
from service.model_refs import BadModelRef, parse_ref
from service.specs_json import network_fields_apart
from service.vocabulary import DataError


@dataclass(frozen=True)
class StartingModel:
    """The model a job starts from, as its row says, and whether its output layer is new."""

    row: TrainedModel
    replace_output: bool

    @property
    def parent(self) -> Parent:
        row = self.row
        standardized = bool(row.training.get("standardize", True))
        return Parent(
            row.task.value, row.network["layers"], row.classes, standardized, row.n_features
        )


def starting_model(session: Session, network: dict) -> StartingModel | None:
    """The tenant's model ``network.init_from`` names now, or None without one; raises
    ``DataError`` naming the field."""
    engine, own = network_fields_apart(network)
    replace_output = own.get("replace_output", False)
    if not isinstance(replace_output, bool):
        raise DataError("network.replace_output", f"must be true or false, got {replace_output!r}")
    if own.get("init_from") is None:
        if replace_output:
            raise DataError("network.replace_output", "needs network.init_from")
        return None
    if engine.get("initial_weights") is not None:
        raise DataError(
            "network.initial_weights", "not with init_from: the model's weights are the start"
        )
    return StartingModel(find_starting_row(session, own["init_from"]), replace_output)


def find_starting_row(session: Session, reference: Any) -> TrainedModel:
    """The row a reference (text, or a model id as a number) names in the session's tenant."""
    if isinstance(reference, bool) or not isinstance(reference, str | int):
        raise DataError("network.init_from", f"must be a model reference, got {reference!r}")
    try:
        ref = parse_ref(str(reference))
    except BadModelRef as error:
        raise DataError("network.init_from", str(error)) from None
    row = registry.find_model(session, ref)
    if row is None:
        raise DataError("network.init_from", f"no model {ref}")
    return row


def output_units(parent_output: dict, dataset: Dataset) -> int:
    """A new output layer's units: the data set's classes or target columns (a single sigmoid
    unit stays one for two classes)."""
    single_sigmoid = parent_output["units"] == 1 and parent_output["activation"] == "sigmoid"
    return 1 if single_sigmoid and dataset.n_outputs == 2 else dataset.n_outputs


def inherited_specs(
    start: StartingModel, network: dict, training: dict, dataset: Dataset
) -> tuple[dict, dict]:
    """model_core's network spec and the training spec with what the body leaves out taken from
    the starting model: its layers (a new output layer sized for the data set with
    ``replace_output``), loss (unless the output is replaced), init and dtype, and whether it
    standardises."""
    engine, _own = network_fields_apart(network)
    parent = start.row.network
    defaults = {"init": parent["init"], "dtype": parent["dtype"]}
    if start.replace_output:
        output = parent["layers"][-1]
        new_output = {**output, "units": output_units(output, dataset)}
        defaults["layers"] = [*parent["layers"][:-1], new_output]
    else:
        defaults.update(layers=parent["layers"], loss=parent["loss"])
    training = {"standardize": start.parent.standardized, **training}
    return {**defaults, **engine}, training


def check_start(start: StartingModel, network: dict, training: dict, dataset: Dataset) -> None:
    """model_core's checks of the resolved specs against the starting model and the data set;
    raises ``SpecError``."""
    check_fine_tunable(
        start.parent,
        network,
        training,
        dataset.task.value,
        dataset.classes,
        dataset.n_features,
        start.replace_output,
    )


def stored_network(start: StartingModel, network: dict) -> dict:
    """The network spec a job stores: model_core's, and the model id it starts from."""
    return {**network, "init_from": start.row.id, "replace_output": start.replace_output}
