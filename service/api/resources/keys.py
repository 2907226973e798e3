"""``/v1/keys``: an admin key manages its own tenant's keys; ``/v1/tokens``: any key gets a
short-lived token for the GETs a browser cannot add headers to (event streams, images)."""

from datetime import UTC, datetime

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from service.api.auth import access_token, key_record
from service.api.context import db, services
from service.api.errors import ErrorSchema, fail
from service.api.registry import registry_changed
from service.api.schemas.keys import (
    KeyCreatedSchema,
    KeyCreateSchema,
    KeySchema,
    TokenRequestSchema,
    TokenSchema,
)
from service.db import keys

blp = Blueprint("keys", __name__, url_prefix="/v1", description="API keys and access tokens")


def own_key(key_id: int):
    """The caller's tenant's key ``key_id`` (another tenant's is not found)."""
    return keys.get_key(db(), key_id) or fail(404, f"No key {key_id}.")


def refuse_beyond_key_limit() -> None:
    limit = services().settings.max_keys_per_tenant
    live = keys.count_live_keys(db(), g.principal.tenant)
    if live >= limit:
        fail(
            409,
            f"This tenant has {live} live keys, the most it may have (MAX_KEYS_PER_TENANT="
            f"{limit}): revoke one first.",
        )


@blp.route("/keys")
class Keys(MethodView):
    @blp.response(200, KeySchema(many=True))
    def get(self):
        """List this tenant's keys (never the keys themselves)"""
        return keys.list_keys(db())

    @blp.arguments(KeyCreateSchema, required=False)
    @blp.response(201, KeyCreatedSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="MAX_KEYS_PER_TENANT live keys")
    def post(self, body: dict):
        """Make a key for this tenant: the key is in this response only. It spends the rate
        budget of the key that made it"""
        refuse_beyond_key_limit()
        row, text = keys.create_key(
            db(),
            g.principal.tenant,
            body["scope"],
            body["expires_in_days"],
            body["description"],
            budget_key_id=g.principal.budget_key_id,
        )
        return {**{field: getattr(row, field) for field in KeySchema().fields}, "key": text}


@blp.route("/keys/<int:key_id>")
class KeyById(MethodView):
    @blp.response(200, KeySchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, key_id: int):
        """Show one of this tenant's keys"""
        return own_key(key_id)


@blp.route("/keys/<int:key_id>/revoke")
class KeyRevocation(MethodView):
    @blp.response(200, KeySchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def post(self, key_id: int):
        """Revoke a key: every API process refuses it from the next request on; the key stays
        listed, with its revoked_at (revoking it again changes nothing)"""
        row = keys.revoke_key(db(), own_key(key_id))
        registry_changed()
        return row


@blp.route("/tokens")
class Tokens(MethodView):
    @blp.arguments(TokenRequestSchema, required=False)
    @blp.response(201, TokenSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="AUTH=off: no key, no token needed")
    def post(self, body: dict):
        """Make a short-lived ?access_token= standing for this key on GET requests"""
        if g.principal.key_id is None:
            fail(409, "AUTH=off: requests need no key, so there is no key to make a token from.")
        token, expires = access_token(key_record(g.principal.key_id), body["expires_in"])
        return {"access_token": token, "expires_at": datetime.fromtimestamp(expires, UTC)}
