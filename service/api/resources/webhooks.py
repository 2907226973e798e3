"""``/v1/webhooks``: an admin key subscribes its tenant's URLs to events, and sees each
delivery's attempts. Deliveries go out from `backprop webhook-worker`, never from a request."""

from flask import g, url_for
from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters

from service.api.context import db, services
from service.api.errors import ErrorSchema, fail
from service.api.resources.paging import PagedBlueprint, page_of
from service.api.schemas.webhooks import (
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookDeliverySchema,
    WebhookSchema,
)
from service.db import webhooks
from service.db.models import Webhook
from service.webhooks import addresses
from service.webhooks.secrets import Sealer, make_secret, secret_problem

blp = PagedBlueprint(
    "webhooks", __name__, url_prefix="/v1/webhooks", description="Webhooks (admin keys)"
)


def own_webhook(webhook_id: int) -> Webhook:
    return webhooks.get_webhook(db(), webhook_id) or fail(404, f"No webhook {webhook_id}.")


def checked_secret(secret: str | None) -> str:
    if secret is None:
        return make_secret()
    problem = secret_problem(secret)
    if problem:
        fail(422, "Not a valid secret.", {"secret": [problem]})
    return secret


def refuse_beyond_webhook_limit() -> None:
    limit = services().settings.max_webhooks_per_tenant
    held = webhooks.count_webhooks(db(), g.principal.tenant)
    if held >= limit:
        fail(
            409,
            f"This tenant has {held} webhooks, the most it may have (MAX_WEBHOOKS_PER_TENANT="
            f"{limit}): delete one first.",
        )


def refuse_unsafe_url(url: str) -> None:
    try:
        addresses.check_url(url, services().settings.webhook_allow_private)
    except addresses.AddressRefused as error:
        fail(422, "Not a URL webhooks may send to.", {"url": [str(error)]})


@blp.route("")
class Webhooks(MethodView):
    @blp.response(200, WebhookSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters: PaginationParameters):
        """List this tenant's webhooks (never their secrets)"""
        return page_of(webhooks.list_webhooks, pagination_parameters)

    @blp.arguments(WebhookCreateSchema)
    @blp.response(201, WebhookCreatedSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="MAX_WEBHOOKS_PER_TENANT webhooks")
    @blp.alt_response(
        422,
        schema=ErrorSchema,
        description="A URL that is not http(s) or reaches an internal address, an unknown"
        " event, or a secret not in the Standard Webhooks format",
    )
    def post(self, body: dict):
        """Subscribe a URL to events: the signing secret is in this response only"""
        refuse_beyond_webhook_limit()
        refuse_unsafe_url(body["url"])
        secret = checked_secret(body["secret"])
        sealed = Sealer.from_settings(services().settings).seal(secret)
        row = webhooks.create_webhook(db(), body["url"], body["events"], sealed)
        location = url_for("webhooks.WebhookById", webhook_id=row.id)
        shown = {field: getattr(row, field) for field in WebhookSchema().fields}
        return {**shown, "secret": secret}, 201, {"Location": location}


@blp.route("/<int:webhook_id>")
class WebhookById(MethodView):
    @blp.response(200, WebhookSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, webhook_id: int):
        """Show one of this tenant's webhooks"""
        return own_webhook(webhook_id)

    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema)
    def delete(self, webhook_id: int):
        """Delete a webhook and its deliveries (those not yet sent never are)"""
        webhooks.delete_webhook(db(), own_webhook(webhook_id))


@blp.route("/<int:webhook_id>/deliveries")
class WebhookDeliveries(MethodView):
    @blp.response(200, WebhookDeliverySchema(many=True))
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.paginate()
    def get(self, webhook_id: int, pagination_parameters: PaginationParameters):
        """The webhook's deliveries, newest first, with each attempt's status code and time"""
        own_webhook(webhook_id)

        def deliveries(session, offset: int, limit: int):
            return webhooks.list_deliveries(session, webhook_id, offset, limit)

        return page_of(deliveries, pagination_parameters)
