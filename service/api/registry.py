"""What a model reference names, per request: from this process's caches while the registry
generation (service/generation.py) has not moved, else from the database.

A prediction thus costs one generation read (a poll of the socket Redis pushes it on, or a small
file read) and two dictionary lookups when nothing changed; a new version, an alias moved or a
model deleted anywhere is seen by the very next request of every process.
"""

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flask import g
from sqlalchemy.orm import Session

from model_core import Model
from service.api.context import current_generation, db, services
from service.db import records, registry
from service.db.models import TrainedModel
from service.db.tenancy import session_for
from service.model_refs import ModelNotFound, ModelRef, parse_ref
from service.serving.rollout import SERVED, ShadowRun, pick_version, split_key

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
class Shadow:
    """An alias's shadow: the version that runs a ``sample`` of its requests, never answering."""

    identity: ModelIdentity
    sample: float


@dataclass(frozen=True)
class Route:
    """What a reference resolves to: one model (``arms`` of one), or an alias's canary split
    (``(identity, weight)`` arms) with its shadow, and the key its counts are kept under."""

    arms: tuple[tuple[ModelIdentity, int], ...]
    alias: str | None = None  # "name@alias", for the hash that routes keys
    counts_key: str | None = None
    shadow: Shadow | None = None

    def pick(self, routing_key: str | None) -> ModelIdentity:
        """The arm that answers: the only one, or by the routing key's hash (rollout.py)."""
        if len(self.arms) == 1:
            return self.arms[0][0]
        by_version = {identity.version: identity for identity, _ in self.arms}
        weights = [(identity.version, weight) for identity, weight in self.arms]
        return by_version[pick_version(weights, self.alias, routing_key)]


@dataclass(frozen=True)
class ServedModel:
    """A model ready to answer, which one it is, and its contract with callers; ``route`` is
    what its reference resolved to (an alias's split and shadow)."""

    model_id: int
    name: str | None
    version: int | None
    model: Model
    signature: dict[str, Any] = field(repr=False)
    route: Route | None = field(default=None, repr=False)

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


def route_for(session: Session, tenant: str, ref: ModelRef) -> Route:
    """What ``ref`` resolves to now: an alias's arms and shadow, else the one model it names."""
    if ref.alias is None:
        return Route(((ModelIdentity.of(row_for(session, ref)), 1),))
    alias = registry.get_alias(session, ref.name, ref.alias)
    if alias is None:
        raise ModelNotFound(f"No model {ref}.")
    arms = alias.split or [{"version": alias.version, "weight": 1}]

    def identity(version: int) -> ModelIdentity:
        return ModelIdentity.of(row_for(session, ModelRef(name=ref.name, version=version)))

    shadow = alias.shadow and Shadow(identity(alias.shadow["version"]), alias.shadow["sample"])
    return Route(
        tuple((identity(arm["version"]), arm["weight"]) for arm in arms),
        alias=str(ref),
        counts_key=split_key(tenant, ref.name, ref.alias, alias.split_id or "-"),
        shadow=shadow or None,
    )


def serve(text: str, routing_key: str | None = None) -> ServedModel:
    """The model ``text`` names (for an alias with a split, the version ``routing_key``
    routes to) and which one it is; ``ModelNotFound`` (or its ``BadModelRef``) otherwise. The
    requests an alias serves are counted per version."""
    ref = parse_ref(text)
    tenant = g.principal.tenant
    route = services().refs.get(
        current_generation(), (tenant, ref), lambda: route_for(db(), tenant, ref)
    )
    identity = route.pick(routing_key)
    if route.counts_key is not None:
        services().rollout_counts.add(route.counts_key, f"{SERVED}{identity.version}")
    model = cached_model(identity)
    return ServedModel(
        identity.model_id, identity.name, identity.version, model, identity.signature, route
    )


def model_loader(identity: ModelIdentity, tenant: str) -> Callable[[], Model]:
    """A function that returns ``identity``'s model from this process's cache, read with a
    session of its own on a miss: for a thread that runs outside the request."""
    context = services()

    def read() -> Model | None:
        with session_for(context.sessions, tenant) as session:
            blob = records.get_model_blob(session, identity.model_id)
        return None if blob is None else Model.from_bytes(blob)

    def load() -> Model:
        model = context.models.get(identity.model_id, read)
        if model is None:
            raise ModelNotFound(f"No model {identity.model_id}.")
        return model

    return load


def run_shadow(served: ServedModel, x: np.ndarray, answered: np.ndarray) -> None:
    """When ``served`` came through an alias with a shadow, queue a sample of its requests to
    run on the shadow version too, off the response path."""
    route = served.route
    if route is None or route.shadow is None or random.random() >= route.shadow.sample:
        return
    shadow, tenant = route.shadow.identity, g.principal.tenant
    name, alias = route.alias.split("@", 1)
    run = ShadowRun(
        route.counts_key,
        (tenant, name, alias, str(shadow.version)),
        model_loader(shadow, tenant),
        x,
        answered,
        services().settings.max_request_memory,
    )
    services().shadows.submit(run)


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
