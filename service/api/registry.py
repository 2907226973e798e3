"""What a model reference names, per request: from this process's caches while the registry
generation (service/generation.py) has not moved, else from the database.

A prediction thus costs one generation read (a Redis ``GET`` or a ``stat``) and two dictionary
lookups when nothing changed; a new version, an alias moved or a model deleted anywhere is seen
by the very next request of every process.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import g
from sqlalchemy.orm import Session

from model_core import Model
from service.api.context import current_generation, db, services
from service.db import records, registry
from service.db.models import TrainedModel
from service.model_refs import ModelNotFound, ModelRef, parse_ref

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelIdentity:
    """Which model a reference names: its id and, when registered, its name and version; and
    its signature, which never changes for an id, so it is cached with the reference."""

    model_id: int
    name: str | None
    version: int | None
    signature: dict[str, Any] = field(compare=False, repr=False)

    @classmethod
    def of(cls, row: TrainedModel) -> "ModelIdentity":
        return cls(row.id, row.name, row.version, row.signature)


@dataclass(frozen=True)
class ServedModel:
    """A model ready to answer, which one it is, and its contract with callers."""

    model_id: int
    name: str | None
    version: int | None
    model: Model
    signature: dict[str, Any] = field(repr=False)

    def identity(self) -> dict:
        """``{"model_id", "name", "version"}`` for a response body (None when unnamed)."""
        return {"model_id": self.model_id, "name": self.name, "version": self.version}

    def headers(self) -> dict[str, str]:
        """``X-Model-Id`` and, for a registered model, ``X-Model-Name`` and ``X-Model-Version``."""
        headers = {"X-Model-Id": str(self.model_id)}
        if self.name is not None:
            headers.update({"X-Model-Name": self.name, "X-Model-Version": str(self.version)})
        return headers


def find_row(session: Session, text: str) -> TrainedModel:
    """The model row ``text`` names, read from the database; ``ModelNotFound`` otherwise."""
    return row_for(session, parse_ref(text))


def row_for(session: Session, ref: ModelRef) -> TrainedModel:
    """The model row ``ref`` names; ``ModelNotFound`` otherwise."""
    row = registry.find_model(session, ref)
    if row is None:
        raise ModelNotFound(f"No model {ref}.")
    return row


def _read_model(model_id: int) -> Model | None:
    blob = records.get_model_blob(db(), model_id)
    return None if blob is None else Model.from_bytes(blob)


def cached_model(identity: ModelIdentity) -> Model:
    """The trained model of ``identity`` from this process's cache, read on a miss."""
    model = services().models.get(identity.model_id, lambda: _read_model(identity.model_id))
    if model is None:
        raise ModelNotFound(f"No model {identity.model_id}.")
    return model


def serve(text: str) -> ServedModel:
    """The model ``text`` names and which one it is; ``ModelNotFound`` (or its ``BadModelRef``)
    otherwise."""
    ref = parse_ref(text)
    identity = services().refs.get(
        current_generation(),
        (g.principal.tenant, ref),
        lambda: ModelIdentity.of(row_for(db(), ref)),
    )
    model = cached_model(identity)
    return ServedModel(
        identity.model_id, identity.name, identity.version, model, identity.signature
    )


def registry_changed(model_id: int | None = None) -> None:
    """After a commit that changes what a reference names: drop ``model_id``'s weights from this
    process and tell every process. The change is committed whatever happens here: when the
    generation cannot be moved (Redis unreachable), other processes see it once their cached
    references age out (``GenerationalCache.max_age``), and the failure is logged."""
    context = services()
    if model_id is not None:
        context.models.evict(model_id)
    try:
        context.generation.bump()
    except Exception:  # redis and the file system each raise their own types
        logger.exception(
            "the registry generation did not move; other API processes see the change within %s s",
            context.refs.max_age,
        )
