"""``/v1/models``: list, show, delete, predict and weights of a model reference; a name's
versions and aliases.

``{ref}`` is an id (``42``), a name (``digits``: its latest version), ``digits:3`` or
``digits@production`` (service/model_refs.py).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
from flask import Request, Response, jsonify, request
from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters
from sqlalchemy.exc import IntegrityError

from model_core import Model
from service.api.context import db, services
from service.api.errors import INVALID_REQUEST, ErrorSchema, fail, load_or_fail
from service.api.prediction_logging import PREDICTION_ID_HEADER, log_prediction
from service.api.registry import (
    ModelIdentity,
    ServedModel,
    cached_model,
    find_row,
    registry_changed,
    row_for,
    run_shadow,
    serve,
)
from service.api.resources.paging import PagedBlueprint, page_of
from service.api.schemas.models import (
    DELETABLE_REF_SCHEMA,
    EVALUATE_BODY,
    NAME_SCHEMA,
    PREDICT_FORM_SCHEMAS,
    REF_DESCRIPTION,
    REF_SCHEMA,
    EvaluateRequestSchema,
    EvaluationSchema,
    ExportQuerySchema,
    ModelDetailSchema,
    ModelSchema,
    PredictionSchema,
    PredictRequestSchema,
    WeightsQuerySchema,
    WeightsSchema,
)
from service.db import records, registry
from service.db.models import TrainedModel
from service.db.npz import arrays_to_npz
from service.model_refs import NAME_RULE, ModelNotFound, parse_ref
from service.serving import rows
from service.serving.csv_predictions import predictions_csv
from service.serving.model_openapi import model_openapi
from service.serving.onnx_export import NotExportable, onnx_model_bytes
from service.serving.predictions import (
    as_lists,
    prediction_arrays,
    standardization,
    weights_as_arrays,
    weights_document,
    weights_document_bytes,
)

blp = PagedBlueprint("models", __name__, url_prefix="/v1/models", description="Trained models")
REF_PARAMETER = {"in": "path", "name": "ref", "description": REF_DESCRIPTION, "schema": REF_SCHEMA}
DELETE_REF_PARAMETER = {
    **REF_PARAMETER,
    "description": "an id (42) or name:version (digits:3)",
    "schema": DELETABLE_REF_SCHEMA,
    "required": True,
}
NAME_PARAMETER = {
    "in": "path",
    "name": "name",
    "description": "a registered model name",
    "schema": NAME_SCHEMA,
}
ALIAS_PARAMETER = {
    "in": "path",
    "name": "alias",
    "description": f"an alias: {NAME_RULE}",
    "schema": NAME_SCHEMA,
}


def model_details(row: TrainedModel, model: Model) -> dict:
    """The row's fields that ModelSchema shows and its signature, plus the standardisation
    only the blob holds, and the models it descends from."""
    shown = {name: getattr(row, name) for name in ModelSchema().fields}
    lineage = [asdict(ancestor) for ancestor in registry.lineage(db(), row)]
    return {
        **shown,
        "signature": row.signature,
        "standardization": standardization(model),
        "lineage": lineage,
    }


PREDICT_REQUEST = PredictRequestSchema()
PREDICT_BODY = {
    "required": True,
    "description": "JSON rows in one of three forms: instances (positional), records or"
    " columns + data (by the feature names of the model's signature, in any order); or CSV"
    " (text/csv): a header row, then one row of features per line. When the model's signature"
    " names its features, CSV columns are matched by those names (others, such as an id or the"
    " target, are left out); else every column is a feature, in order",
    "content": {
        "application/json": {"schema": {"oneOf": PREDICT_FORM_SCHEMAS}},
        "text/csv": {"schema": {"type": "string"}},
    },
}
PREDICTION_ID_DOC = {
    "description": "The answer's id in the prediction log (service/api/prediction_logging.py)",
    "schema": {"type": "string"},
}
PREDICT_CSV_DOC = {
    "content": {"text/csv": {"schema": {"type": "string"}}},
    "description": "JSON, or with Accept: text/csv a header row and one line per row:"
    " prediction, then probability_<label> per class for a classifier; prediction (one output)"
    " or prediction_0, prediction_1, ... for regression",
}


# What a prediction answers in, JSON first (on a tie); and the Accept headers (None: no header)
# under which JSON is the answer whatever werkzeug's negotiation would weigh.
ANSWER_TYPES = ["application/json", "text/csv"]
JSON_FIRST_ACCEPTS = frozenset({None, "*/*", "application/json"})


def predict_body(req: Request) -> dict | bytes:
    """The body of a prediction, read before the model is looked up (so that an oversized body
    is a 413 whatever the ref): the bytes of a CSV body, or the checked JSON body."""
    if req.mimetype == "text/csv":
        return req.get_data()
    if not req.is_json:
        fail(415, "Send application/json or text/csv.")
    payload = req.get_json(silent=True)
    if payload is None:
        fail(400, INVALID_REQUEST, {"json": ["Invalid JSON body."]})
    if instances_alone(payload):
        return payload
    return load_or_fail(PREDICT_REQUEST, payload)


def instances_alone(payload: object) -> bool:
    """Whether ``payload`` is ``{"instances": ...}`` and nothing else, not null: a body that
    ``PredictRequestSchema`` loads as it is (a ``Raw`` field, one form), so the hot path skips
    marshmallow's load (a twentieth of a single-row prediction's time)."""
    return type(payload) is dict and len(payload) == 1 and payload.get("instances") is not None


def rows_to_predict(served: ServedModel, body: dict | bytes, limit: int) -> np.ndarray:
    """The rows of ``predict_body`` (at most ``limit``): JSON in one of its forms, or CSV with a
    header row."""
    if isinstance(body, bytes):
        return rows.csv_rows(served.model, served.signature, body, limit)
    return rows.request_rows(served.model, served.signature, body, limit)


def json_response(body: dict, headers: dict[str, str]) -> Response:
    """``body`` as JSON, as PredictionSchema documents it: already plain lists and numbers, so
    the hot path skips marshmallow's dump (a twentieth of a single-row prediction's time)."""
    response = jsonify(body)
    response.headers.update(headers)
    return response


def wants_csv(req: Request) -> bool:
    """Whether the request's Accept header prefers text/csv to JSON (JSON on a tie). The
    headers most clients send (``JSON_FIRST_ACCEPTS``) are answered without werkzeug's parse
    and match of the header (5 to 20 us)."""
    accept = req.environ.get("HTTP_ACCEPT")
    if accept in JSON_FIRST_ACCEPTS:
        return False
    return req.accept_mimetypes.best_match(ANSWER_TYPES) == "text/csv"


def routing_key(req: Request, body: dict | bytes) -> str | None:
    """What routes the request on an alias's split: the JSON body's ``routing_key``, else the
    ``X-Routing-Key`` header (CSV, or JSON without one)."""
    if isinstance(body, dict) and "routing_key" in body:
        return body["routing_key"]
    return req.headers.get("X-Routing-Key")


def rows_field(body: dict | bytes) -> str:
    """The request field the rows came in: ``body`` (CSV), ``instances``, ``records`` or
    ``data``."""
    if isinstance(body, bytes):
        return "body"
    return next(form for form in ("instances", "records", "data") if form in body)


def evaluation_data(
    served: ServedModel, body: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """Rows, their targets, their weights (a weighted data set's, else None) and the request
    field they came from: a stored data set checked against the model's inputs, or inline
    ``instances`` and ``targets``."""
    settings = services().settings
    if "dataset_id" not in body:
        return rows.inline_evaluation_data(
            served.model, body, settings.max_predict_rows, settings.max_label_chars
        )
    session, dataset_id = db(), body["dataset_id"]
    dataset = records.get_dataset(session, dataset_id) or fail(404, f"No data set {dataset_id}.")
    return rows.dataset_evaluation_data(session, served.model, served.signature, dataset)


def deletable_row(ref_text: str) -> TrainedModel:
    """The model ``DELETE`` may remove: named by id or ``name:version`` only (a bare name or an
    alias would quietly roll the name back to an older version), and no alias serving or
    shadowing it."""
    ref = parse_ref(ref_text)
    if ref.model_id is None and ref.version is None:
        message = "delete takes an id (42) or name:version (digits:3), never a name or alias"
        fail(422, "A model to delete is named by its id or name:version.", {"ref": [message]})
    row = row_for(db(), ref)
    aliases = registry.versions_in_rollout(db(), row.name).get(row.version) if row.name else None
    if aliases:
        names = ", ".join(f"{row.name}@{alias}" for alias in aliases)
        fail(
            409,
            f"{row.name}:{row.version} is what {names} serves or shadows; move the alias first.",
        )
    return row


@contextmanager
def conflicts_answered_409(message: str) -> Iterator[None]:
    """A registry write that a concurrent request made impossible (the database's keys refused
    it, or the alias moved since it was read) is a 409 saying ``message``, with nothing
    written."""
    try:
        yield
    except (IntegrityError, registry.AliasMoved):
        db().rollback()
        fail(409, f"Conflict: {message}.")


def existing_name(name: str) -> str:
    if not registry.name_exists(db(), name):
        raise ModelNotFound(f"No model named {name}.")
    return name


def file_doc(description: str) -> dict:
    """An OpenAPI response that is a file of bytes."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"content": {"application/octet-stream": binary}, "description": description}


NPZ_DOC = file_doc(
    "JSON, or with ?format=npz a file of members W0, b0, W1, b1, ..., mean and"
    " scale (when standardized), classes (classification) and spec (a 0-d string array of JSON:"
    " task, dtype, the layers' units and activations, standardized); np.load(file,"
    " allow_pickle=False) reads every one"
)


def file_response(served: ServedModel, content: bytes, filename: str) -> Response:
    disposition = f'attachment; filename="model-{served.model_id}-{filename}"'
    return Response(
        content,
        mimetype="application/octet-stream",
        headers={"Content-Disposition": disposition, **served.headers()},
    )


def npz_response(served: ServedModel) -> Response:
    return file_response(served, arrays_to_npz(**weights_as_arrays(served.model)), "weights.npz")


def onnx_response(served: ServedModel) -> Response:
    try:
        content = onnx_model_bytes(served.model)
    except NotExportable as error:
        fail(422, "This model has no ONNX form.", {"format": [str(error)]})
    return file_response(served, content, "model.onnx")


ONNX_DOC = file_doc(
    "An ONNX file (opset 21): input `input` [N, n_features] FLOAT or DOUBLE as"
    " the model's dtype, raw rows (the graph standardises them); outputs `probabilities`"
    " [N, n_classes] and `predictions` [N] for classifiers, `predictions` [N, n_outputs] for"
    " regression. With ?format=npz, the weights file of /weights?format=npz"
)


@blp.route("")
class Models(MethodView):
    @blp.response(200, ModelSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters: PaginationParameters):
        """List models, oldest first"""
        return page_of(records.list_models, pagination_parameters)


@blp.route("/<ref>", parameters=[REF_PARAMETER])
class ModelByRef(MethodView):
    @blp.response(200, ModelDetailSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, ref: str):
        """Show a model: name, version, aliases, spec, data set, job, final metrics, classes,
        standardization"""
        row = find_row(db(), ref)
        return model_details(row, cached_model(ModelIdentity.of(row)))

    @blp.doc(parameters=[DELETE_REF_PARAMETER])
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="An alias points at this version")
    @blp.alt_response(422, schema=ErrorSchema, description="Not an id or name:version")
    def delete(self, ref: str):
        """Delete a model, by id or name:version"""
        row = deletable_row(ref)
        with conflicts_answered_409("an alias was set on this version meanwhile; move it first"):
            records.delete_row(db(), row)
        registry_changed(row.id)


@blp.route("/<ref>/predict", parameters=[REF_PARAMETER])
class ModelPrediction(MethodView):
    @blp.doc(requestBody=PREDICT_BODY, responses={200: PREDICT_CSV_DOC})
    @blp.response(200, PredictionSchema, headers={PREDICTION_ID_HEADER: PREDICTION_ID_DOC})
    @blp.alt_response(400, schema=ErrorSchema, description="Not JSON")
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(415, schema=ErrorSchema, description="Neither JSON nor CSV")
    @blp.alt_response(422, schema=ErrorSchema, description="Bad rows: width, NaN, ragged, CSV")
    def post(self, ref: str):
        """Predict labels (and class probabilities) or values for rows of features, as JSON or
        CSV (Content-Type and Accept: text/csv)"""
        return predict(ref)


def predict(ref: str) -> Response:
    """``POST /v1/models/{ref}/predict``; the app routes it here directly (DIRECT_VIEWS), past
    the wrappers of ``ModelPrediction.post``, which document the operation."""
    req, settings = request._get_current_object(), services().settings  # each proxy once
    body = predict_body(req)
    served = serve(ref, routing_key(req, body))
    x = rows_to_predict(served, body, settings.max_predict_rows)
    arrays = prediction_arrays(served.model, x, settings.max_request_memory, rows_field(body))
    run_shadow(served, x, arrays["predictions"])
    prediction_id = log_prediction(served, x, arrays)
    headers = {**served.headers(), PREDICTION_ID_HEADER: prediction_id}
    if wants_csv(req):
        text = predictions_csv(served.model, arrays)
        return Response(text, mimetype="text/csv", headers=headers)
    answer = {**served.identity(), "prediction_id": prediction_id}
    return json_response({**answer, **as_lists(arrays)}, headers)


OPENAPI_DOC = {
    "description": "An OpenAPI 3.1 document of this model's predict operation: one required"
    " number property per input of its signature, its classes as an enum",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


@blp.route("/<ref>/openapi.json", parameters=[REF_PARAMETER])
class ModelContract(MethodView):
    @blp.response(200)
    @blp.doc(responses={200: OPENAPI_DOC})
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, ref: str):
        """The model's own OpenAPI document: its predict operation, its inputs by name"""
        served = serve(ref)
        settings = services().settings
        title = f"{served.name}:{served.version}" if served.name else f"model {served.model_id}"
        document = model_openapi(
            ref,
            title,
            served.model,
            served.signature,
            server_url=request.script_root or "/",
            max_rows=settings.max_predict_rows,
            secured=settings.auth == "required",
        )
        return document, 200, served.headers()


@blp.route("/<ref>/evaluate", parameters=[REF_PARAMETER])
class ModelEvaluation(MethodView):
    @blp.arguments(EvaluateRequestSchema)
    @blp.doc(requestBody=EVALUATE_BODY)
    @blp.response(200, EvaluationSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such model or data set")
    @blp.alt_response(
        422, schema=ErrorSchema, description="Data that does not fit the model's inputs/outputs"
    )
    def post(self, body: dict, ref: str):
        """Evaluate a model on a data set or inline rows: loss, accuracy, per-class precision
        and recall and the confusion matrix; or loss, MSE, MAE and R^2"""
        served = serve(ref)
        x, y, weights, field = evaluation_data(served, body)
        settings = services().settings
        report = asdict(rows.evaluated(served.model, x, y, field, settings, weights))
        answer = {**served.identity(), "dataset_id": body.get("dataset_id"), **report}
        return answer, 200, served.headers()


def refuse_weights_beyond_request_memory(model: Model) -> None:
    needed = weights_document_bytes(model)
    limit = services().settings.max_request_memory
    if needed > limit:
        message = (
            f"As JSON these weights would take about {needed} bytes of memory, over "
            f"MAX_REQUEST_MEMORY ({limit}): ask ?format=npz, which is streamed."
        )
        fail(422, message, {"format": [message]})


@blp.route("/<ref>/weights", parameters=[REF_PARAMETER])
class ModelWeights(MethodView):
    @blp.arguments(WeightsQuerySchema, location="query")
    @blp.response(200, WeightsSchema)
    @blp.doc(responses={200: NPZ_DOC})
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="Too large for JSON: ?format=npz")
    def get(self, query: dict, ref: str):
        """All a forward pass needs: per layer W (inputs, units), b (units,) and the activation,
        the standardisation and the classes; ?format=npz for the same as a file"""
        served = serve(ref)
        if query["format"] == "npz":
            return npz_response(served)
        refuse_weights_beyond_request_memory(served.model)
        return weights_document(served.model), 200, served.headers()


@blp.route("/<name>/versions", parameters=[NAME_PARAMETER])
class ModelVersions(MethodView):
    @blp.response(200, ModelSchema(many=True))
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, name: str):
        """List the versions of a name still there, oldest first"""
        return registry.list_versions(db(), existing_name(name))


@blp.route("/<ref>/export", parameters=[REF_PARAMETER])
class ModelExport(MethodView):
    @blp.arguments(ExportQuerySchema, location="query")
    @blp.response(200)
    @blp.doc(responses={200: ONNX_DOC})
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="Not expressible in ONNX")
    def get(self, query: dict, ref: str):
        """The model as a file to run elsewhere: ONNX (the default), or npz weights"""
        served = serve(ref)
        if query["format"] == "npz":
            return npz_response(served)
        return onnx_response(served)
