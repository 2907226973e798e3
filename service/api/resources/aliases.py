"""``/v1/models/{name}/aliases/{alias}``: set, show and remove an alias: one version, or a
canary split of up to four by weight, and a shadow version that runs a sample of the requests
without answering them (issue 23). A move that would break the alias's callers (the versions'
signatures differ, service/signatures.py) is a 409 unless ``?force=true``."""

from flask.views import MethodView
from marshmallow import ValidationError

from service.api.context import db, services
from service.api.errors import ErrorSchema, fail
from service.api.registry import find_row, registry_changed
from service.api.resources.models import (
    ALIAS_PARAMETER,
    NAME_PARAMETER,
    conflicts_answered_409,
    existing_name,
)
from service.api.resources.paging import PagedBlueprint
from service.api.schemas.models import (
    AliasQuerySchema,
    AliasRequestSchema,
    AliasSchema,
    check_name,
)
from service.db import registry
from service.db.models import ModelAlias as AliasRow
from service.db.models import TrainedModel
from service.db.registry import AliasTarget
from service.model_refs import ModelNotFound
from service.serving.rollout import served_counts, shadow_figures, split_key
from service.signatures import signature_changes

blp = PagedBlueprint(
    "aliases", __name__, url_prefix="/v1/models", description="Aliases: splits and shadows"
)


def requested_target(name: str, body: dict) -> tuple[AliasTarget, list[TrainedModel]]:
    """What the body asks the alias to point at, and the rows of the versions that would answer
    (the largest weight first); a version that does not exist is a 404."""
    arms = body.get("versions") or [{"version": body["version"], "weight": 100}]
    arms = sorted(arms, key=lambda arm: (-arm["weight"], arm["version"]))
    rows = [find_row(db(), f"{name}:{arm['version']}") for arm in arms]
    shadow = body.get("shadow")
    if shadow:
        find_row(db(), f"{name}:{shadow['version']}")
    split = [dict(arm) for arm in arms] if len(arms) > 1 else None
    return AliasTarget(arms[0]["version"], split, shadow and dict(shadow)), rows


def callers_broken(name: str, current: AliasRow | None, rows: list[TrainedModel]) -> list[str]:
    """What the versions that would answer break for callers of what answers now (the alias's
    version of the largest weight; for a new alias, the new largest weight's): each difference,
    prefixed with the version when several would answer."""
    reference = rows[0] if current is None else find_row(db(), f"{name}:{current.version}")
    changes = []
    for row in rows:
        differences = signature_changes(reference.signature, row.signature)
        prefix = f"version {row.version}: " if len(rows) > 1 else ""
        changes += [prefix + difference for difference in differences]
    return changes


def alias_answer(row: AliasRow, changes: list[str] | None = None) -> dict:
    """The alias as it is: its versions with the requests each served since it was set, its
    shadow's figures, and (after a move) what the move changed for callers."""
    counts = services().rollout_counts.read(
        split_key(row.tenant, row.name, row.alias, row.split_id or "-")
    )
    served = served_counts(counts)
    arms = row.split or [{"version": row.version, "weight": 100}]
    answer = {
        "name": row.name,
        "alias": row.alias,
        "version": row.version,
        "versions": [{**arm, "served": served.get(arm["version"], 0)} for arm in arms],
        "shadow": None,
    }
    if row.shadow:
        task = find_row(db(), f"{row.name}:{row.shadow['version']}").task.value
        answer["shadow"] = {**row.shadow, **shadow_figures(counts, task)}
    if changes is not None:
        answer["changes"] = changes
    return answer


def existing_alias(name: str, alias: str) -> AliasRow:
    row = registry.get_alias(db(), name, alias)
    if row is None:
        raise ModelNotFound(f"No alias {name}@{alias}.")
    return row


@blp.route("/<name>/aliases/<alias>", parameters=[NAME_PARAMETER, ALIAS_PARAMETER])
class ModelAlias(MethodView):
    @blp.arguments(AliasRequestSchema)
    @blp.arguments(AliasQuerySchema, location="query")
    @blp.response(200, AliasSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such name or version")
    @blp.alt_response(
        409,
        schema=ErrorSchema,
        description="A new version's signature would break the alias's callers (details: each"
        " difference; ?force=true moves it anyway), or a concurrent change got there first",
    )
    @blp.alt_response(422, schema=ErrorSchema, description="Not a valid alias or split")
    def put(self, body: dict, query: dict, name: str, alias: str):
        """Point name@alias at a version, or split it between up to four by weight, with a
        shadow if asked; refusing versions whose signature would break the alias's callers
        unless ?force=true"""
        try:
            check_name(alias)
        except ValidationError as error:
            fail(422, "Not a valid alias.", {"alias": error.messages})
        target, rows = requested_target(existing_name(name), body)
        current = registry.get_alias(db(), name, alias)
        changes = callers_broken(name, current, rows)
        if changes and not query["force"]:
            versions = ", ".join(f"{name}:{row.version}" for row in rows)
            now = f"{name}:{current.version}" if current else f"{name}:{rows[0].version}"
            message = (
                f"{versions} do not take and answer what {name}@{alias} ({now}) does; its"
                " callers would break. Move it with ?force=true to do it anyway."
            )
            fail(409, message, {"signature": changes})
        with conflicts_answered_409("the alias or the version changed meanwhile; try again"):
            aliased = registry.set_alias(db(), name, alias, target, current)
        registry_changed()
        return alias_answer(aliased, changes)

    @blp.response(200, AliasSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, name: str, alias: str):
        """Show name@alias: its version or split, the requests each version served since the
        alias was set, and its shadow's agreement"""
        return alias_answer(existing_alias(name, alias))

    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema)
    def delete(self, name: str, alias: str):
        """Remove the alias name@alias (the versions it pointed at stay)"""
        registry.delete_alias(db(), existing_alias(name, alias))
        registry_changed()
