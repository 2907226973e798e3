"""API keys and the access tokens made from them."""

import marshmallow as ma
from marshmallow import validate

from service.api.auth import MAX_ACCESS_TOKEN_SECONDS
from service.api.schemas.text import text_rules
from service.vocabulary import Scope


class KeySchema(ma.Schema):
    id = ma.fields.Integer()
    tenant = ma.fields.String()
    scope = ma.fields.Enum(Scope, by_value=True)
    description = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    expires_at = ma.fields.DateTime(allow_none=True, metadata={"description": "null: never"})
    revoked_at = ma.fields.DateTime(allow_none=True, metadata={"description": "null: active"})


class KeyCreateSchema(ma.Schema):
    scope = ma.fields.Enum(
        Scope,
        by_value=True,
        load_default=Scope.READ,
        metadata={"description": "read: GETs and predictions; write: also changes; admin: keys"},
    )
    expires_in_days = ma.fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=36500, min_inclusive=False),
        metadata={"description": "null: the key never expires", "exclusiveMinimum": True},
    )
    description = ma.fields.String(
        load_default=None, allow_none=True, validate=text_rules(min_length=0)
    )


class KeyCreatedSchema(KeySchema):
    key = ma.fields.String(
        metadata={"description": "the key itself: shown only in this response, keep it safe"}
    )


class TokenRequestSchema(ma.Schema):
    expires_in = ma.fields.Integer(
        load_default=300,
        validate=validate.Range(min=1, max=MAX_ACCESS_TOKEN_SECONDS),
        metadata={"description": "seconds the token is good for"},
    )


class TokenSchema(ma.Schema):
    access_token = ma.fields.String(
        metadata={"description": "send as ?access_token= on GET requests (event streams, images)"}
    )
    expires_at = ma.fields.DateTime()
