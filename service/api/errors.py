"""The error envelope every failure answers with.

``{"error": {"code": "unprocessable_entity", "message": "...", "details": {field: [messages]}}}``;
``details`` keys are paths like ``network.layers[1].activation`` or ``instances[2]``. Under /v2,
the Open Inference Protocol, the same failures answer its ``{"error": "..."}`` instead.
"""

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import marshmallow as ma
from apispec import BasePlugin
from flask import Flask, current_app, has_request_context, request
from flask_smorest import Api, abort
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from model_core import SpecError
from service.jobs.cancellation import NotCancellable
from service.model_refs import ModelNotFound
from service.quotas import QuotaExceeded
from service.vocabulary import DataError

INVALID_REQUEST = "The request is not valid; see details."


class ErrorBodySchema(ma.Schema):
    code = ma.fields.String(metadata={"description": "The HTTP status name in snake_case"})
    message = ma.fields.String()
    details = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))


class ErrorSchema(ma.Schema):
    error = ma.fields.Nested(ErrorBodySchema)


def fail(
    status: int,
    message: str,
    details: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> NoReturn:
    """Stop the request with ``status`` and the envelope built from ``message`` and ``details``
    (and the response ``headers`` given)."""
    abort(status, message=message, errors=dict(details or {}), headers=dict(headers or {}))


def load_or_fail(schema, data) -> dict:
    """``schema.load(data)``, answering a 422 with the field errors when it does not validate."""
    try:
        return schema.load(data)
    except ValidationError as error:
        fail(422, INVALID_REQUEST, flatten_messages(error.messages))


def field_path(prefix: str, key: object) -> str:
    """Join a path the way model_core names fields: ``layers[1].activation``."""
    if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested error dicts into ``{path: [messages]}``."""
    if isinstance(messages, Mapping):
        flat: dict[str, list[str]] = {}
        for key, value in messages.items():
            flat.update(flatten_messages(value, field_path(prefix, key)))
        return flat
    if isinstance(messages, str):
        messages = [messages]
    return {prefix or "_schema": [str(message) for message in messages]}


def validation_details(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """Details from ``fail`` (``errors``) or from webargs (``messages`` keyed by location)."""
    if "errors" in data:
        return data["errors"]
    details: dict[str, list[str]] = {}
    for location, messages in data.get("messages", {}).items():
        details.update(
            flatten_messages(messages, "" if isinstance(messages, Mapping) else location)
        )
    return details


def error_message(error: HTTPException, data: Mapping[str, Any]) -> str:
    """The human sentence of the envelope."""
    if "message" in data:
        return data["message"]
    if error.code == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return f"The request body is larger than the limit of {limit} bytes (MAX_REQUEST_BYTES)."
    if "messages" in data:
        return INVALID_REQUEST
    return error.description or error.name


ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


class DeclaredResponse(BasePlugin):
    """An apispec plugin: ``status`` documented as ``response`` (the error envelope) on every
    operation ``applies(path, operation)`` selects, unless the operation declares it itself: for
    the answers of a hook that runs before every view (a body's 400, a rate limit's 429)."""

    def __init__(
        self, status: int, response: dict, applies: Callable[[str | None, dict], bool]
    ) -> None:
        super().__init__()
        self.status = status
        self.response = {**response, "content": ERROR_CONTENT}
        self.applies = applies

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            declared = {self.status, str(self.status)} & responses.keys()
            if self.applies(path, operation) and not declared:
                responses[str(self.status)] = self.response


class EnvelopeApi(Api):
    """flask-smorest's Api answering every HTTP error with the service's envelope."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):
        data = getattr(error, "data", None) or {}
        code = error.name.lower().replace(" ", "_")
        body = envelope(code, error_message(error, data), validation_details(data))
        return body, error.code, {**exception_headers(error), **(data.get("headers") or {})}


def exception_headers(error: HTTPException) -> dict[str, str]:
    """The headers werkzeug gives the error (``Allow`` on a 405), but its Content-Type: the
    envelope is JSON."""
    return {name: value for name, value in error.get_headers() if name.lower() != "content-type"}


def envelope(code: str, message: str, details: Mapping[str, list[str]]) -> dict:
    if speaks_inference_protocol():
        return {"error": message}
    return {"error": {"code": code, "message": message, "details": dict(details)}}


def speaks_inference_protocol() -> bool:
    """Whether the request is under /v2, whose clients (tritonclient raises the message as its
    exception's) read an error as ``{"error": "..."}``: routing's 404 and 405 included."""
    if not has_request_context():
        return False
    return request.path == "/v2" or request.path.startswith("/v2/")


def unprocessable_response(error: DataError | SpecError):
    message = error.summary if isinstance(error, DataError) else str(error)
    return envelope("unprocessable_entity", message, {error.path: [error.message]}), 422


def not_found_response(error: ModelNotFound):
    return envelope("not_found", str(error), {}), 404


def conflict_response(error: Exception):
    return envelope("conflict", str(error), {}), 409


def quota_response(error: QuotaExceeded):
    code = "too_many_requests" if error.status == 429 else "unprocessable_entity"
    headers = {} if error.retry_after is None else {"Retry-After": str(error.retry_after)}
    return envelope(code, error.message, {error.quota: [error.message]}), error.status, headers


DOMAIN_ERRORS = {
    DataError: unprocessable_response,
    SpecError: unprocessable_response,
    NotCancellable: conflict_response,
    ModelNotFound: not_found_response,
    QuotaExceeded: quota_response,
}


def register_domain_errors(app: Flask) -> None:
    """Answer the engine's and the ingest's validation errors with a 422 envelope, a job that
    cannot change state with a 409, a model reference that names no model with a 404, and a
    tenant's quota with a 429 or a 422."""
    for error_type, handler in DOMAIN_ERRORS.items():
        app.register_error_handler(error_type, handler)
