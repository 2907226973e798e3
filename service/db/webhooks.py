"""Webhooks in the database: subscriptions, the outbox of events (one delivery row per event and
subscribed webhook, written in the transaction of the event), and the life of a delivery
(dispatched, claimed under a lease, attempted, ended).

``record_event`` is the one call that emits an event: whoever changes something a webhook may
hear about calls it before committing, so the event exists exactly when the change does. Every
later write is one conditional UPDATE, so several dispatchers and webhook workers may run.
"""

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from service.db.models import TrainedModel, Webhook, WebhookAttempt, WebhookDelivery, utcnow
from service.db.records import page
from service.vocabulary import WEBHOOK_EVENTS, DeliveryStatus


def create_webhook(session: Session, url: str, events: list[str], secret_sealed: str) -> Webhook:
    """Subscribe ``url`` to ``events`` for the session's tenant, and commit."""
    row = Webhook(url=url, events=events, secret_sealed=secret_sealed)
    session.add(row)
    session.commit()
    return row


def get_webhook(session: Session, webhook_id: int) -> Webhook | None:
    return session.scalar(select(Webhook).where(Webhook.id == webhook_id))


def count_webhooks(session: Session, tenant: str) -> int:
    """How many webhooks ``tenant`` holds."""
    return session.scalar(select(func.count(Webhook.id)).where(Webhook.tenant == tenant))


def list_webhooks(session: Session, offset: int, limit: int) -> tuple[list[Webhook], int]:
    return page(session, select(Webhook).order_by(Webhook.id), offset, limit)


def delete_webhook(session: Session, row: Webhook) -> None:
    """Delete the webhook with its deliveries (those still pending are never sent), and commit."""
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == row.id))
    session.delete(row)
    session.commit()


def list_deliveries(
    session: Session, webhook_id: int, offset: int, limit: int
) -> tuple[list[WebhookDelivery], int]:
    """The webhook's deliveries, newest first, each with its attempts."""
    statement = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    return page(session, statement.order_by(WebhookDelivery.id.desc()), offset, limit)


def event_body(event_type: str, data: Mapping[str, Any], at: datetime) -> str:
    """The Standard Webhooks payload: ``{"type", "timestamp", "data"}``, as the bytes sent."""
    timestamp = at.isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event_type, "timestamp": timestamp, "data": dict(data)})


def record_event(
    session: Session, tenant: str, event_type: str, data: Mapping[str, Any]
) -> list[WebhookDelivery]:
    """Queue ``event_type`` with ``data`` for every webhook of ``tenant`` subscribed to it,
    without committing: the caller commits it with the change it tells of. Returns the
    deliveries added (none when nobody listens)."""
    if event_type not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown event {event_type!r}; valid: {', '.join(WEBHOOK_EVENTS)}")
    hooks = session.scalars(select(Webhook).where(Webhook.tenant == tenant))
    listening = [hook for hook in hooks if event_type in hook.events]
    if not listening:
        return []
    now = utcnow()
    event_id = f"msg_{uuid.uuid4().hex}"
    body = event_body(event_type, data, now)
    deliveries = [
        WebhookDelivery(
            tenant=tenant,
            webhook_id=hook.id,
            event_id=event_id,
            event_type=event_type,
            body=body,
            next_attempt_at=now,
        )
        for hook in listening
    ]
    session.add_all(deliveries)
    return deliveries


def record_job_finished(
    session: Session,
    tenant: str,
    job_id: int,
    status: str,
    error: str | None = None,
    model_id: int | None = None,
    sweep_id: int | None = None,
) -> None:
    """Record the ``job.finished`` event of a job that just ended, without committing."""
    data = {
        "job_id": job_id,
        "status": str(status),
        "error": error,
        "model_id": model_id,
        "sweep_id": sweep_id,
    }
    record_event(session, tenant, "job.finished", data)


def record_version_created(session: Session, model: TrainedModel) -> None:
    """Record the ``model.version.created`` event of ``model`` (named, versioned, flushed),
    without committing."""
    data = {
        "model_id": model.id,
        "name": model.name,
        "version": model.version,
        "job_id": model.job_id,
    }
    record_event(session, model.tenant, "model.version.created", data)


def _due(now: datetime) -> Any:
    """Pending, its next attempt due, and held by no live lease."""
    return and_(
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.next_attempt_at <= now,
        or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
    )


def deliveries_to_dispatch(session: Session, sent_before: datetime, limit: int) -> list[int]:
    """Due deliveries never published since they became due, or published before
    ``sent_before`` and still unclaimed or with an expired lease (the message or its webhook
    worker was lost), oldest first."""
    now = utcnow()
    unsent = or_(
        WebhookDelivery.dispatched_at.is_(None), WebhookDelivery.dispatched_at < sent_before
    )
    return list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(_due(now), unsent)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        )
    )


def mark_dispatched(session: Session, delivery_id: int) -> None:
    """Record that the delivery was just published to the webhook queue, and commit."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(dispatched_at=utcnow())
    )
    session.commit()


@dataclass(frozen=True)
class Claim:
    """A delivery claimed for attempt ``number``: what to send, where, and signed with what."""

    delivery_id: int
    number: int
    event_id: str
    body: str
    url: str
    secret_sealed: str
    created_at: datetime


def claim_delivery(
    session: Session, delivery_id: int, owner: str, lease_seconds: float
) -> Claim | None:
    """Take a due delivery for its next attempt under a lease held by ``owner``, record the
    attempt as started, and commit; None when it is not due (sent, failed, being sent, or a
    duplicate message)."""
    now = utcnow()
    claimed = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, _due(now))
        .values(
            attempts=WebhookDelivery.attempts + 1,
            claimed_until=now + timedelta(seconds=lease_seconds),
        )
        .returning(
            WebhookDelivery.attempts,
            WebhookDelivery.webhook_id,
            WebhookDelivery.event_id,
            WebhookDelivery.body,
            WebhookDelivery.created_at,
        )
    ).one_or_none()
    if claimed is None:
        session.rollback()
        return None
    hook = session.get(Webhook, claimed.webhook_id)
    session.add(WebhookAttempt(delivery_id=delivery_id, number=claimed.attempts, owner=owner))
    session.commit()
    return Claim(
        delivery_id,
        claimed.attempts,
        claimed.event_id,
        claimed.body,
        hook.url,
        hook.secret_sealed,
        claimed.created_at,
    )


@dataclass(frozen=True)
class Outcome:
    """What an attempt got: the receiver's status code, or why it got none."""

    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff_seconds(attempt: int, base: float, most: float = 3600.0) -> float:
    """The wait after failed attempt ``attempt`` (from 1): ``base`` doubled each time, at most
    ``most``."""
    return min(base * 2 ** (attempt - 1), most)


def end_attempt(
    session: Session,
    claim: Claim,
    outcome: Outcome,
    max_attempts: int,
    backoff_base: float,
) -> DeliveryStatus | None:
    """Record attempt ``claim.number``'s outcome and what follows (delivered; failed for good
    after ``max_attempts``; due again after a backoff), and commit. Fenced by the attempt
    number: None, and nothing written, when a later attempt has claimed the delivery since
    (this one outlived its lease)."""
    now = utcnow()
    if outcome.delivered:
        values = {"status": DeliveryStatus.SUCCEEDED, "finished_at": now}
    elif claim.number >= max_attempts:
        values = {"status": DeliveryStatus.FAILED, "finished_at": now}
    else:
        wait = timedelta(seconds=backoff_seconds(claim.number, backoff_base))
        values = {"next_attempt_at": now + wait}
    ended = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == claim.delivery_id,
            WebhookDelivery.attempts == claim.number,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(claimed_until=None, dispatched_at=None, **values)
        .returning(WebhookDelivery.status)
    ).scalar()
    if ended is None:
        session.rollback()
        return None
    session.execute(
        update(WebhookAttempt)
        .where(
            WebhookAttempt.delivery_id == claim.delivery_id,
            WebhookAttempt.number == claim.number,
        )
        .values(finished_at=now, status_code=outcome.status_code, error=outcome.error)
    )
    session.commit()
    return ended


def reseal_secrets(session: Session, reseal) -> int:
    """Replace every webhook's sealed secret by ``reseal(sealed)`` and commit; return how many
    (the rotation of SECRET_KEY: service/webhooks/secrets.py)."""
    hooks = list(session.scalars(select(Webhook)))
    for hook in hooks:
        hook.secret_sealed = reseal(hook.secret_sealed)
    session.commit()
    return len(hooks)
