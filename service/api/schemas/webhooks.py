"""Webhooks: a subscription (its secret shown once), and its deliveries with their attempts."""

import json

import marshmallow as ma
from marshmallow import validate

from service.api.schemas.text import text_rules
from service.vocabulary import WEBHOOK_EVENTS, DeliveryStatus

MAX_URL_LENGTH = 2048


class WebhookSchema(ma.Schema):
    id = ma.fields.Integer()
    url = ma.fields.String()
    events = ma.fields.List(ma.fields.String(validate=validate.OneOf(WEBHOOK_EVENTS)))
    created_at = ma.fields.DateTime()


class WebhookCreateSchema(ma.Schema):
    url = ma.fields.String(
        required=True,
        validate=text_rules(max_length=MAX_URL_LENGTH),
        metadata={
            "description": "http or https; refused when its host resolves to a loopback,"
            " private, link-local, multicast or other internal address (unless"
            " WEBHOOK_ALLOW_PRIVATE=true)"
        },
    )
    events = ma.fields.List(
        ma.fields.String(validate=validate.OneOf(WEBHOOK_EVENTS)),
        required=True,
        validate=validate.Length(min=1, max=len(WEBHOOK_EVENTS)),
        metadata={"description": "what to send: " + ", ".join(WEBHOOK_EVENTS)},
    )
    secret = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=200),
        metadata={
            "description": "Standard Webhooks format: whsec_ + base64 of 24 to 64 random"
            " bytes; null or absent: the service makes one"
        },
    )

    @ma.post_load
    def unique_events(self, data: dict, **_kwargs) -> dict:
        return {**data, "events": list(dict.fromkeys(data["events"]))}


class WebhookCreatedSchema(WebhookSchema):
    secret = ma.fields.String(
        metadata={"description": "the signing secret: shown only in this response, keep it safe"}
    )


class WebhookAttemptSchema(ma.Schema):
    number = ma.fields.Integer()
    started_at = ma.fields.DateTime()
    finished_at = ma.fields.DateTime(
        allow_none=True, metadata={"description": "null: in flight, or lost with its worker"}
    )
    status_code = ma.fields.Integer(
        allow_none=True, metadata={"description": "the receiver's answer; null: none came"}
    )
    error = ma.fields.String(
        allow_none=True, metadata={"description": "why no answer came (refused, timeout...)"}
    )


class WebhookDeliverySchema(ma.Schema):
    id = ma.fields.Integer()
    event_id = ma.fields.String(metadata={"description": "the webhook-id header"})
    type = ma.fields.String(attribute="event_type")
    data = ma.fields.Method(
        "event_data",
        metadata={"type": "object", "description": "the event's data, as the body sends it"},
    )
    status = ma.fields.Enum(DeliveryStatus, by_value=True)
    created_at = ma.fields.DateTime()
    next_attempt_at = ma.fields.Method(
        "pending_next_attempt",
        metadata={"type": "string", "format": "date-time", "nullable": True},
    )
    finished_at = ma.fields.DateTime(allow_none=True)
    attempts = ma.fields.List(ma.fields.Nested(WebhookAttemptSchema), attribute="tries")

    def event_data(self, delivery) -> dict:
        return json.loads(delivery.body)["data"]

    def pending_next_attempt(self, delivery) -> str | None:
        if delivery.status is not DeliveryStatus.PENDING:
            return None
        return delivery.next_attempt_at.isoformat()
