"""The promotion gate of an alias (issue 23), without HTTP: the API runs it within a request,
and a worker runs it as an operation when the data set is large. Version N is evaluated on
held-out data, and the alias moves to it only when every requirement holds, and only if the
alias is still as it was when the gate was asked for."""

from collections.abc import Callable
from dataclasses import asdict

from sqlalchemy.orm import Session

from model_core import Model
from service.db import records
from service.db.models import Dataset, TrainedModel
from service.db.models import ModelAlias as AliasRow
from service.db.registry import AliasTarget
from service.serving import rows as request_rows
from service.serving.rollout import GATE_METRICS, gate_failures
from service.settings import Settings
from service.vocabulary import DataError

ModelLoader = Callable[[TrainedModel], Model]


class GateRefused(Exception):
    """A requirement failed: a 409 naming each failed requirement, with both versions'
    figures (``details``)."""

    def __init__(self, message: str, details: dict[str, list[str]]):
        super().__init__(message)
        self.message = message
        self.details = details


def checked_gate_data_set(candidate: TrainedModel, dataset: Dataset, require: dict) -> None:
    """A gate's data set is never the one the candidate trained on, and every figure it
    requires is one its task has: a ``DataError`` naming the field otherwise."""
    if candidate.dataset_id == dataset.id:
        raise DataError(
            "dataset_id",
            f"version {candidate.version} was trained on it: a gate on training data proves "
            "nothing",
            "Evaluate on held-out data.",
        )
    task = candidate.task.value
    for metric in require:
        if metric not in GATE_METRICS[task]:
            raise DataError(
                f"require.{metric}",
                f"not a figure of {task}: one of {', '.join(GATE_METRICS[task])}",
                "A requirement the evaluation has no figure for.",
            )


def version_evaluation(
    session: Session, row: TrainedModel, model: Model, dataset: Dataset, settings: Settings
) -> dict:
    """``/evaluate``'s answer for the version ``row`` (whose network is ``model``) on the
    stored ``dataset``."""
    x, y, weights, field = request_rows.dataset_evaluation_data(
        session, model, row.signature, dataset
    )
    report = request_rows.evaluated(model, x, y, field, settings, weights)
    identity = {"model_id": row.id, "name": row.name, "version": row.version}
    return {**identity, "dataset_id": dataset.id, **asdict(report)}


def judged_versions(
    session: Session,
    candidate: TrainedModel,
    current: TrainedModel | None,
    dataset: Dataset,
    body: dict,
    settings: Settings,
    load: ModelLoader,
) -> dict:
    """Evaluate the candidate (and, when ``current`` is given, the version answering now) on
    ``dataset``; ``GateRefused`` when a requirement fails, else both evaluations as the answer
    shows them (``candidate`` and ``current``, None when not compared)."""
    judged = version_evaluation(session, candidate, load(candidate), dataset, settings)
    compared = None
    if current is not None:
        compared = version_evaluation(session, current, load(current), dataset, settings)
    failed = gate_failures(body["require"], judged, compared, candidate.task.value)
    if failed:
        details = {path: [message] for path, message in failed.items()}
        for metric in body["require"]:
            details[f"candidate.{metric}"] = [str(judged[metric])]
            if compared is not None:
                details[f"current.{metric}"] = [str(compared[metric])]
        paths = ", ".join(failed)
        raise GateRefused(f"Version {body['version']} did not pass the gate: {paths}.", details)
    return {
        "candidate": {"version": candidate.version, "evaluation": judged},
        "current": compared and {"version": current.version, "evaluation": compared},
    }


def promoted_target(current: AliasRow | None, version: int) -> AliasTarget:
    """Where the alias points once ``version`` passed: that version alone, its shadow kept
    unless the shadow was that version."""
    shadow = current and current.shadow
    if shadow and shadow["version"] == version:
        shadow = None
    return AliasTarget(version, None, shadow)


def alias_state(row: AliasRow | None) -> dict | None:
    """What an operation remembers of the alias when the gate was asked for: the move happens
    only if the alias is still so (None: it did not exist)."""
    return None if row is None else {"version": row.version, "split_id": row.split_id}


def is_large(dataset: Dataset, settings: Settings) -> bool:
    """Whether a gate on ``dataset`` runs off the request (GATE_SYNC_ROWS)."""
    return dataset.n_samples > settings.gate_sync_rows


def stored_model(session: Session) -> ModelLoader:
    """A loader reading each version's network from the database (a worker has no cache of
    them)."""

    def load(row: TrainedModel) -> Model:
        return Model.from_bytes(records.get_model_blob(session, row.id))

    return load
