"""The model registry in the database: version numbers per name, references to rows, aliases.

A version number comes from its name's ``model_names`` row, incremented in the transaction that
stores the model: the row lock makes concurrent successes of one name take turns (PostgreSQL),
and SQLite has a single writer anyway, so two models never share a version.
"""

import uuid
from dataclasses import dataclass

from sqlalchemy import Select, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from model_core import MAX_INT32
from service.db import webhooks
from service.db.models import ModelAlias, ModelName, TrainedModel
from service.model_refs import ModelRef

_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def next_version(session: Session, tenant: str, name: str) -> int:
    """Take the next version number of ``tenant``'s ``name`` (registering the name on first
    use), without committing: the caller commits it with the model that carries it."""
    insert = _INSERT[session.get_bind().dialect.name]
    session.execute(insert(ModelName).values(tenant=tenant, name=name).on_conflict_do_nothing())
    return session.scalar(
        update(ModelName)
        .where(ModelName.tenant == tenant, ModelName.name == name)
        .values(last_version=ModelName.last_version + 1)
        .returning(ModelName.last_version)
    )


def _statement_for(ref: ModelRef) -> Select | None:
    models = select(TrainedModel)
    if ref.model_id is not None:
        return models.where(TrainedModel.id == ref.model_id) if ref.model_id <= MAX_INT32 else None
    if ref.version is not None:
        if ref.version > MAX_INT32:
            return None
        return models.where(TrainedModel.name == ref.name, TrainedModel.version == ref.version)
    if ref.alias is not None:
        return models.join(
            ModelAlias,
            (ModelAlias.tenant == TrainedModel.tenant)
            & (ModelAlias.name == TrainedModel.name)
            & (ModelAlias.version == TrainedModel.version),
        ).where(ModelAlias.name == ref.name, ModelAlias.alias == ref.alias)
    latest = models.where(TrainedModel.name == ref.name)
    return latest.order_by(TrainedModel.version.desc()).limit(1)


def find_model(session: Session, ref: ModelRef) -> TrainedModel | None:
    """The model ``ref`` names now: a bare name is its highest version still there."""
    statement = _statement_for(ref)
    return None if statement is None else session.scalar(statement)


def name_exists(session: Session, name: str) -> bool:
    """Whether the session's tenant has registered ``name`` (service/db/tenancy.py)."""
    return session.scalar(select(ModelName).where(ModelName.name == name)) is not None


def list_versions(session: Session, name: str) -> list[TrainedModel]:
    statement = select(TrainedModel).where(TrainedModel.name == name)
    return list(session.scalars(statement.order_by(TrainedModel.version)))


def get_alias(session: Session, name: str, alias: str) -> ModelAlias | None:
    """The session's tenant's ``name@alias`` (service/db/tenancy.py)."""
    statement = select(ModelAlias).where(ModelAlias.name == name, ModelAlias.alias == alias)
    return session.scalar(statement)


class AliasMoved(Exception):
    """The alias no longer points where the caller saw it point: a concurrent move."""


@dataclass(frozen=True)
class AliasTarget:
    """Where an alias points: ``version`` (the largest weight's, when split), the ``split``
    (``[{"version", "weight"}, ...]``, None for one version) and the ``shadow`` (or None)."""

    version: int
    split: list[dict] | None = None
    shadow: dict | None = None


def set_alias(
    session: Session,
    name: str,
    alias: str,
    target: AliasTarget,
    seen: ModelAlias | None,
    commit: bool = True,
) -> ModelAlias:
    """Point ``name@alias`` at ``target`` (whose versions the caller has checked exist), with a
    new ``split_id``, and commit (unless ``commit`` is false: the caller commits it with what
    else it writes), provided the alias is still as the caller ``seen`` it (None: it did not
    exist); ``AliasMoved`` otherwise, so that what the caller checked still holds when the move
    is written. A move is an ``alias.moved`` event, committed with it."""
    values = {
        "version": target.version,
        "split": target.split,
        "shadow": target.shadow,
        "split_id": uuid.uuid4().hex,
    }
    if seen is None:
        row = ModelAlias(name=name, alias=alias, **values)
        session.add(row)
        session.flush()
        alias_moved(session, row.tenant, name, alias, None, target)
        if commit:
            session.commit()
        return row
    same_split = (
        ModelAlias.split_id.is_(None)
        if seen.split_id is None
        else ModelAlias.split_id == seen.split_id
    )
    old = AliasTarget(seen.version, seen.split, seen.shadow)
    moved = session.execute(
        update(ModelAlias)
        .where(ModelAlias.name == name, ModelAlias.alias == alias)
        .where(ModelAlias.version == seen.version, same_split)
        .values(**values)
    )
    if moved.rowcount != 1:
        session.rollback()
        raise AliasMoved(f"{name}@{alias} moved meanwhile")
    if old != target:
        alias_moved(session, seen.tenant, name, alias, old, target)
    session.commit() if commit else session.flush()
    session.expire_all()
    return get_alias(session, name, alias)


def versions_in_rollout(session: Session, name: str) -> dict[int, list[str]]:
    """The versions of ``name`` that an alias serves or shadows, each with its aliases."""
    held: dict[int, list[str]] = {}
    for row in session.scalars(select(ModelAlias).where(ModelAlias.name == name)):
        versions = {row.version, *(arm["version"] for arm in row.split or [])}
        if row.shadow:
            versions.add(row.shadow["version"])
        for version in versions:
            held.setdefault(version, []).append(row.alias)
    return held


def aliased_models(session: Session, limit: int) -> list[tuple[str, int]]:
    """``(tenant, model id)`` of the versions aliases serve (a split's every arm), the most
    recently moved aliases first, at most ``limit``: what an API process warms up by default.
    Over every tenant: for a session opened without one."""
    wanted: dict[tuple[str, str, int], None] = {}
    aliases = select(ModelAlias).order_by(
        ModelAlias.updated_at.desc(), ModelAlias.tenant, ModelAlias.name, ModelAlias.alias
    )
    for row in session.scalars(aliases):
        for version in (row.version, *(arm["version"] for arm in row.split or [])):
            wanted.setdefault((row.tenant, row.name, version))
        if len(wanted) >= limit:
            break
    found = []
    for tenant, name, version in list(wanted)[:limit]:
        model_id = session.scalar(
            select(TrainedModel.id).where(
                TrainedModel.tenant == tenant,
                TrainedModel.name == name,
                TrainedModel.version == version,
            )
        )
        if model_id is not None:
            found.append((tenant, model_id))
    return found


def delete_alias(session: Session, row: ModelAlias) -> None:
    """Remove the alias (an ``alias.moved`` event to no version), and commit."""
    old = AliasTarget(row.version, row.split, row.shadow)
    alias_moved(session, row.tenant, row.name, row.alias, old, None)
    session.delete(row)
    session.commit()


def alias_moved(
    session: Session,
    tenant: str,
    name: str,
    alias: str,
    old: AliasTarget | None,
    new: AliasTarget | None,
) -> None:
    """Record the ``alias.moved`` event of ``name@alias`` going from ``old`` to ``new`` (None:
    the alias did not exist, or no longer does), without committing. ``*_version`` is the
    version served (a split's largest weight's), ``*_split`` the split (None: one version)."""
    data = {"name": name, "alias": alias}
    for side, target in (("old", old), ("new", new)):
        data[f"{side}_version"] = target and target.version
        data[f"{side}_split"] = target and target.split
        data[f"{side}_shadow"] = target and target.shadow
    webhooks.record_event(session, tenant, "alias.moved", data)


# Ancestors shown at most: a chain of fine-tunings longer than this is cut (``truncated``).
MAX_LINEAGE = 100


@dataclass(frozen=True)
class Ancestor:
    """A model another was fine-tuned from: its id, and its name and version while it is there
    (``deleted``: it is not, and its own parent is unknown)."""

    model_id: int
    name: str | None = None
    version: int | None = None
    deleted: bool = False


def lineage(session: Session, row: TrainedModel) -> list[Ancestor]:
    """The models ``row`` descends from: its parent first, then the parent's parent..., up to
    a model trained from fresh weights, a deleted one, or ``MAX_LINEAGE`` of them."""
    ancestors: list[Ancestor] = []
    parent_id = row.parent_model_id
    while parent_id is not None and len(ancestors) < MAX_LINEAGE:
        parent = session.get(TrainedModel, parent_id)
        if parent is None:
            ancestors.append(Ancestor(parent_id, deleted=True))
            break
        ancestors.append(Ancestor(parent.id, parent.name, parent.version))
        parent_id = parent.parent_model_id
    return ancestors
