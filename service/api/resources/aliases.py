"""``/v1/models/{name}/aliases/{alias}``: set, show and remove an alias: one version, or a
canary split of up to four by weight, and a shadow version that runs a sample of the requests
without answering them (issue 23). A move that would break the alias's callers (the versions'
signatures differ, service/signatures.py) is a 409 unless ``?force=true``."""

from flask.views import MethodView
from marshmallow import ValidationError

from model_core import Model
from service.api.context import db, services
from service.api.errors import ErrorSchema, fail
from service.api.registry import ModelIdentity, cached_model, find_row, registry_changed
from service.api.resources.models import (
    ALIAS_PARAMETER,
    NAME_PARAMETER,
    conflicts_answered_409,
    existing_name,
)
from service.api.resources.operations import ACCEPTED_DOC, accepted, prefers_async
from service.api.resources.paging import PagedBlueprint
from service.api.schemas.models import (
    AliasQuerySchema,
    AliasRequestSchema,
    AliasSchema,
    PromoteRequestSchema,
    PromotionSchema,
    check_name,
)
from service.api.schemas.operations import OperationSchema
from service.db import records, registry
from service.db.models import Dataset, TrainedModel
from service.db.models import ModelAlias as AliasRow
from service.db.registry import AliasTarget
from service.model_refs import ModelNotFound
from service.serving import promotion
from service.serving.rollout import alias_view, split_key
from service.signatures import signature_changes
from service.vocabulary import OperationKind

blp = PagedBlueprint(
    "aliases", __name__, url_prefix="/v1/models", description="Aliases: splits and shadows"
)


def requested_target(name: str, body: dict) -> tuple[AliasTarget, list[TrainedModel]]:
    """What the body asks the alias to point at, and the rows of the versions that would see its
    requests: those that answer (the largest weight first), then the shadow, which is sent the
    same rows; a version that does not exist is a 404."""
    arms = body.get("versions") or [{"version": body["version"], "weight": 100}]
    arms = sorted(arms, key=lambda arm: (-arm["weight"], arm["version"]))
    rows = [find_row(db(), f"{name}:{arm['version']}") for arm in arms]
    shadow = body.get("shadow")
    if shadow:
        rows.append(find_row(db(), f"{name}:{shadow['version']}"))
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
    shadow_task = row.shadow and find_row(db(), f"{row.name}:{row.shadow['version']}").task.value
    answer = alias_view(row, shadow_task or None, counts)
    if changes is not None:
        answer["changes"] = changes
    return answer


def valid_alias(alias: str) -> str:
    try:
        check_name(alias)
    except ValidationError as error:
        fail(422, "Not a valid alias.", {"alias": error.messages})
    return alias


def refuse_breaking_callers(name: str, alias: str, changes: list[str], force: bool) -> None:
    """A move whose versions would break the alias's callers is a 409 listing each
    difference, unless forced."""
    if changes and not force:
        message = (
            f"the new versions do not take and answer what {name}@{alias} does now; its callers"
            " would break. Move it with ?force=true to do it anyway."
        )
        fail(409, message, {"signature": changes})


def gate_data_set(candidate: TrainedModel, body: dict) -> Dataset:
    """The held-out data set of a promotion (a 404 when there is none, a 422 when it is not
    held out or lacks a required figure: promotion.checked_gate_data_set)."""
    dataset = records.get_dataset(db(), body["dataset_id"])
    if dataset is None:
        fail(404, f"No data set {body['dataset_id']}.")
    promotion.checked_gate_data_set(candidate, dataset, body["require"])
    return dataset


def cached_version(row: TrainedModel) -> Model:
    return cached_model(ModelIdentity.of(row))


def written_move(
    name: str, alias: str, target: AliasTarget, current: AliasRow | None, conflict: str
) -> AliasRow:
    """Move the alias to ``target`` if it is still ``current`` (else a 409 saying
    ``conflict``), and tell every process."""
    with conflicts_answered_409(f"{conflict}; try again"):
        moved = registry.set_alias(db(), name, alias, target, current)
    registry_changed()
    return moved


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
        valid_alias(alias)
        target, rows = requested_target(existing_name(name), body)
        current = registry.get_alias(db(), name, alias)
        changes = callers_broken(name, current, rows)
        refuse_breaking_callers(name, alias, changes, query["force"])
        moved = written_move(name, alias, target, current, "the alias changed meanwhile")
        return alias_answer(moved, changes)

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


@blp.route("/<name>/aliases/<alias>/promote", parameters=[NAME_PARAMETER, ALIAS_PARAMETER])
class AliasPromotion(MethodView):
    @blp.arguments(PromoteRequestSchema)
    @blp.arguments(AliasQuerySchema, location="query")
    @blp.response(200, PromotionSchema)
    @blp.alt_response(202, schema=OperationSchema, **ACCEPTED_DOC)
    @blp.alt_response(404, schema=ErrorSchema, description="No such name, version or data set")
    @blp.alt_response(
        409,
        schema=ErrorSchema,
        description="A requirement failed (details: each failed requirement and both versions'"
        " figures), the signature would break callers, or the alias moved meanwhile",
    )
    @blp.alt_response(
        422,
        schema=ErrorSchema,
        description="The candidate's own training data, a figure its task has not, bad fields",
    )
    def post(self, body: dict, query: dict, name: str, alias: str):
        """Evaluate a version on held-out data and move name@alias to it only when every
        requirement holds (and, if asked, it is no worse than the alias's current version); on a
        data set of more than GATE_SYNC_ROWS rows (or with Prefer: respond-async), a worker does
        it: 202 and the operation at Location"""
        valid_alias(alias)
        candidate = find_row(db(), f"{existing_name(name)}:{body['version']}")
        dataset = gate_data_set(candidate, body)
        current = registry.get_alias(db(), name, alias)
        changes = callers_broken(name, current, [candidate])
        refuse_breaking_callers(name, alias, changes, query["force"])
        settings = services().settings
        if prefers_async() or promotion.is_large(dataset, settings):
            seen = promotion.alias_state(current)
            work = {"name": name, "alias": alias, "body": body, "seen": seen, "changes": changes}
            return accepted(OperationKind.PROMOTION, work)
        compared = None
        if body["not_worse_than_current"] and current is not None:
            compared = find_row(db(), f"{name}:{current.version}")
        try:
            judged = promotion.judged_versions(
                db(), candidate, compared, dataset, body, settings, cached_version
            )
        except promotion.GateRefused as refusal:
            fail(409, refusal.message, refusal.details)
        target = promotion.promoted_target(current, candidate.version)
        conflict = "the alias changed while the versions were evaluated"
        moved = written_move(name, alias, target, current, conflict)
        return {"alias": alias_answer(moved, changes), **judged}
