"""Operations run by `backprop webhook-worker` (service/db/operations.py): claimed under a lease
that a heartbeat renews while the work runs, ended with the answer the request would have had:
its result, or its error envelope with the HTTP status (a failed gate's 409, a 422 naming a
field, a 404 for what was deleted meanwhile).

A runner's writes (a promotion's alias move) commit in one transaction with the operation's
result, fenced by the claim: an attempt that outlived its lease (another holds the operation now)
writes neither. A promotion moves its alias only if the alias is as it was when the gate was
asked for.
"""

import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.db import operations, records, registry
from service.db.models import TrainedModel
from service.db.operations import Claim, error_body
from service.db.tenancy import session_for
from service.generation import Generation
from service.model_refs import ModelNotFound, ModelRef
from service.serving import promotion
from service.serving.explanations import importance
from service.serving.rollout import alias_view
from service.settings import Settings
from service.vocabulary import DataError, OperationKind
from worker.lease import Heartbeat

logger = logging.getLogger(__name__)


class OperationFailed(Exception):
    """The operation ends with this error: ``status`` is the HTTP status its request would have
    answered."""

    def __init__(self, status: int, message: str, details: dict | None = None):
        super().__init__(message)
        self.body = error_body(status, message, details)


def run_operation(
    sessions: sessionmaker[Session], operation_id: int, settings: Settings, generation: Generation
) -> None:
    """Run operation ``operation_id`` if it is claimable, and end it with its result or error.
    Anything unexpected ends it as a 500 and is re-raised for the worker's log."""
    with sessions() as session:
        claim = operations.claim_operation(
            session, operation_id, settings.operation_lease_seconds, settings.operation_max_attempts
        )
    if claim is None:
        logger.info("operation %s is not claimable; nothing to do", operation_id)
        return
    with heartbeat_of(sessions, claim, settings.operation_lease_seconds):
        try:
            with session_for(sessions, claim.tenant) as session:
                result = RUNNERS[claim.kind](session, claim.request, settings)
                ended = end(session, claim, {"result": result})
            if ended and claim.kind is OperationKind.PROMOTION:
                bump(generation)
            return
        except OperationFailed as failure:
            ending = {"error": failure.body}
        except promotion.GateRefused as refusal:
            ending = {"error": error_body(409, refusal.message, refusal.details)}
        except DataError as error:
            ending = {"error": error_body(422, error.summary, {error.field: [error.message]})}
        except ModelNotFound as error:
            ending = {"error": error_body(404, str(error))}
        except Exception as error:
            message = f"the operation failed: {type(error).__name__}; see the worker's log"
            with sessions() as session:
                end(session, claim, {"error": error_body(500, message)})
            raise
    with sessions() as session:
        end(session, claim, ending)


def heartbeat_of(sessions: sessionmaker[Session], claim: Claim, lease_seconds: float) -> Heartbeat:
    def renew(session: Session) -> None:
        operations.renew_claim(session, claim, lease_seconds)

    what = f"operation {claim.operation_id}"
    return Heartbeat(sessions, renew, lease_seconds, lease_seconds / 3, what)


def end(session: Session, claim: Claim, ending: dict) -> bool:
    """End the claimed operation with ``ending`` (its result or error), committing with it
    what the session wrote; False, and nothing written, when a later attempt holds it."""
    ended = operations.end_operation(session, claim, **ending)
    if not ended:
        logger.warning("operation %s: a later attempt holds it", claim.operation_id)
    return ended


def run_promotion(session: Session, request: dict, settings: Settings) -> dict:
    """The promotion gate, then the move (written, not committed), as ``POST .../promote``
    answers them."""
    name, alias = request["name"], request["alias"]
    body = request["body"]
    dataset = records.get_dataset(session, body["dataset_id"])
    if dataset is None:
        raise OperationFailed(404, f"No data set {body['dataset_id']}.")
    candidate = version_row(session, name, body["version"])
    current = registry.get_alias(session, name, alias)
    if promotion.alias_state(current) != request["seen"]:
        raise OperationFailed(409, f"{name}@{alias} changed since the gate was asked for.")
    compared = None
    if body["not_worse_than_current"] and current is not None:
        compared = version_row(session, name, current.version)
    load = promotion.stored_model(session)
    judged = promotion.judged_versions(session, candidate, compared, dataset, body, settings, load)
    target = promotion.promoted_target(current, candidate.version)
    try:
        moved = registry.set_alias(session, name, alias, target, current, commit=False)
    except (registry.AliasMoved, IntegrityError):
        session.rollback()
        raise OperationFailed(
            409, f"{name}@{alias} changed while the versions were evaluated."
        ) from None
    shadow_task = moved.shadow and version_row(session, name, moved.shadow["version"]).task.value
    view = alias_view(moved, shadow_task or None)
    return {"alias": {**view, "changes": request["changes"]}, **judged}


def run_importance(session: Session, request: dict, settings: Settings) -> dict:
    """Global feature importance, as ``POST .../importance`` answers it, of the version the
    request's reference named when it was accepted."""
    row = session.scalar(select(TrainedModel).where(TrainedModel.id == request["model_id"]))
    if row is None:
        raise OperationFailed(404, f"Model {request['model_id']} was deleted.")
    body = request["body"]
    dataset = records.get_dataset(session, body["dataset_id"])
    if dataset is None:
        raise OperationFailed(404, f"No data set {body['dataset_id']}.")
    model = promotion.stored_model(session)(row)
    answer = importance(session, model, row.signature, dataset, body, settings.for_operations())
    identity = {"model_id": row.id, "name": row.name, "version": row.version}
    return {**identity, **answer}


def version_row(session: Session, name: str, version: int) -> TrainedModel:
    row = registry.find_model(session, ModelRef(name=name, version=version))
    if row is None:
        raise ModelNotFound(f"No model {name}:{version}.")
    return row


def bump(generation: Generation) -> None:
    """Tell every API process that the alias moved; when that fails, they see it once their
    cached references age out."""
    try:
        generation.bump()
    except Exception:  # redis and the file system each raise their own types
        logger.exception("the registry generation did not move")


RUNNERS: dict[OperationKind, Callable[[Session, dict, Settings], dict]] = {
    OperationKind.PROMOTION: run_promotion,
    OperationKind.IMPORTANCE: run_importance,
}
