"""``/v1/operations``: what a request answered with ``202 Accepted`` became. A promotion gate on
a large data set and an importance above the synchronous limit are run by a worker; their
request answers at once with ``Location: /v1/operations/{id}``, and the operation shows the
result (or the error) the request would have answered, with its created and finished times.
A request may ask for this path whatever its size with ``Prefer: respond-async`` (RFC 7240)."""

import logging

from flask import Response, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters

from service.api.context import db, services
from service.api.errors import ErrorSchema, fail
from service.api.resources.paging import PagedBlueprint, page_of
from service.api.schemas.operations import OperationQuerySchema, OperationSchema
from service.db import operations
from service.vocabulary import OperationKind

logger = logging.getLogger(__name__)

blp = PagedBlueprint(
    "operations",
    __name__,
    url_prefix="/v1/operations",
    description="Requests answered later: a large promotion gate, a large importance",
)

ACCEPTED_DOC = {
    "description": "Accepted: run by a worker; poll the operation at Location",
    "headers": {"Location": {"schema": {"type": "string"}, "description": "the operation"}},
}


def prefers_async() -> bool:
    """Whether the request asked to be answered later (``Prefer: respond-async``)."""
    preferences = request.headers.get("Prefer", "")
    return any(
        part.split(";")[0].strip().lower() == "respond-async" for part in preferences.split(",")
    )


def accepted(kind: OperationKind, work: dict) -> Response:
    """Store the operation, ask a worker to run it, and answer 202 with its Location. When the
    broker cannot take the message, the dispatcher sends it later."""
    row = operations.create_operation(db(), kind, work)
    try:
        services().queue.enqueue_operation(row.id)
        operations.mark_dispatched(db(), row.id)
    except Exception as error:  # kombu, redis and SQLAlchemy each raise their own types
        db().rollback()
        logger.warning("operation %s waits for the dispatcher: %s", row.id, error)
    answer = jsonify(OperationSchema().dump(row))
    answer.status_code = 202
    answer.headers["Location"] = url_for("operations.OperationById", operation_id=row.id)
    if prefers_async():
        answer.headers["Preference-Applied"] = "respond-async"
    return answer


@blp.route("")
class Operations(MethodView):
    @blp.arguments(OperationQuerySchema, location="query")
    @blp.response(200, OperationSchema(many=True))
    @blp.paginate()
    def get(self, query: dict, pagination_parameters: PaginationParameters):
        """List this tenant's operations, newest first"""

        def listed(session, offset: int, limit: int):
            return operations.list_operations(session, query["status"], offset, limit)

        return page_of(listed, pagination_parameters)


@blp.route("/<int:operation_id>")
class OperationById(MethodView):
    @blp.response(200, OperationSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, operation_id: int):
        """Show an operation: its status, and its result or error once it ended"""
        row = operations.get_operation(db(), operation_id)
        return row or fail(404, f"No operation {operation_id}.")
