"""Operations: what a request accepted with a 202 ended with, or how far it is."""

import marshmallow as ma
from marshmallow import validate

from service.vocabulary import OperationKind, OperationStatus

KINDS = [kind.value for kind in OperationKind]
STATUSES = [status.value for status in OperationStatus]


class OperationErrorSchema(ma.Schema):
    status = ma.fields.Integer(metadata={"description": "the HTTP status the request would have"})
    code = ma.fields.String(metadata={"description": "that status's name in snake_case"})
    message = ma.fields.String()
    details = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))


class OperationSchema(ma.Schema):
    id = ma.fields.Integer()
    kind = ma.fields.String(validate=validate.OneOf(KINDS))
    status = ma.fields.String(
        validate=validate.OneOf(STATUSES),
        metadata={"description": "queued, running, then succeeded (result) or failed (error)"},
    )
    attempts = ma.fields.Integer(metadata={"description": "workers that took it up so far"})
    created_at = ma.fields.DateTime()
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)
    result = ma.fields.Dict(
        allow_none=True,
        metadata={"description": "the answer the request would have given with a 200"},
    )
    error = ma.fields.Nested(OperationErrorSchema, allow_none=True)


class OperationQuerySchema(ma.Schema):
    status = ma.fields.String(
        load_default=None, validate=validate.OneOf(STATUSES), metadata={"description": "only these"}
    )
