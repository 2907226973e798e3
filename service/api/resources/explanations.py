"""``/v1/models/{ref}/explain``: which inputs drove a model's outputs, through its own backward
pass; ``/v1/models/{ref}/importance``: the mean absolute attribution per feature over a data
set's rows."""

import json

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from service.api.context import db, services
from service.api.errors import ErrorSchema, fail
from service.api.registry import serve
from service.api.resources.models import REF_PARAMETER
from service.api.resources.operations import ACCEPTED_DOC, accepted, prefers_async
from service.api.schemas.explanations import (
    EXPLAIN_BODY,
    ExplainRequestSchema,
    ExplanationSchema,
    ImportanceRequestSchema,
    ImportanceSchema,
)
from service.api.schemas.operations import OperationSchema
from service.db import records
from service.serving import rows
from service.serving.explanations import checked_importance, explanation, importance
from service.vocabulary import OperationKind

blp = Blueprint(
    "explanations",
    __name__,
    url_prefix="/v1/models",
    description="Why a model answered what it did",
)


@blp.route("/<ref>/explain", parameters=[REF_PARAMETER])
class ModelExplanation(MethodView):
    @blp.arguments(ExplainRequestSchema)
    @blp.doc(requestBody=EXPLAIN_BODY)
    @blp.response(200, ExplanationSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(
        422,
        schema=ErrorSchema,
        description="Bad rows (in any of predict's forms), a target the model lacks, a baseline"
        " of the wrong width, or more work than EXPLAIN_MAX_EVALUATIONS (the field named)",
    )
    def post(self, body: dict, ref: str):
        """Attribute each row's output to its features: Integrated Gradients, the input
        gradient, gradient x input, or exact Shapley values"""
        served = serve(ref)
        settings = services().settings
        x = rows.request_rows(served.model, served.signature, body, settings.max_predict_rows)
        answer = explanation(db(), served.model, served.signature, x, body, settings)
        return ordered_json({**served.identity(), **answer}, served.headers())


@blp.route("/<ref>/importance", parameters=[REF_PARAMETER])
class ModelImportance(MethodView):
    @blp.arguments(ImportanceRequestSchema)
    @blp.response(200, ImportanceSchema)
    @blp.alt_response(202, schema=OperationSchema, **ACCEPTED_DOC)
    @blp.alt_response(404, schema=ErrorSchema, description="No such model or data set")
    @blp.alt_response(
        422,
        schema=ErrorSchema,
        description="A data set that does not fit the model, a bad option, or more work than"
        " EXPLAIN_MAX_OPERATION_EVALUATIONS (the field named: rows, steps, baseline.rows)",
    )
    def post(self, body: dict, ref: str):
        """Global feature importance: the mean absolute attribution of each feature over a
        seeded sample of a data set's rows; above EXPLAIN_MAX_EVALUATIONS forward rows (or with
        Prefer: respond-async), a worker computes it: 202 and the operation at Location"""
        served = serve(ref)
        session, dataset_id = db(), body["dataset_id"]
        dataset = records.get_dataset(session, dataset_id) or fail(
            404, f"No data set {dataset_id}."
        )
        settings = services().settings
        work = checked_importance(session, served.model, dataset, body, settings.for_operations())
        if prefers_async() or work > settings.explain_max_evaluations:
            operation = {"model_id": served.model_id, "body": body}
            return accepted(OperationKind.IMPORTANCE, operation)
        answer = importance(session, served.model, served.signature, dataset, body, settings)
        return ordered_json({**served.identity(), **answer}, served.headers())


def ordered_json(body: dict, headers: dict[str, str]) -> Response:
    """``body`` as JSON with its keys in their order (Flask's provider sorts them): each row's
    attributions come in the model's input order. Plain values already, as ExplanationSchema
    documents them."""
    return Response(json.dumps(body), mimetype="application/json", headers=headers)
