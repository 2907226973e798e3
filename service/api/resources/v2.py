"""``/v2``: the Open Inference Protocol (KServe v2) beside our own API, so that a stock client
(tritonclient's, KServe's, Seldon's) works unchanged: health, server and model metadata, model
readiness and inference, JSON or with the binary tensor extension.

``{name}`` is a registered name (its latest version), ``name@alias`` or the id of a model;
``/versions/{version}`` makes it ``name:version``. Every error answers the protocol's
``{"error": "..."}`` (service.api.errors renders /v2 that way), and every answer from a model
carries its X-Model-Id, X-Model-Name and X-Model-Version headers.
"""

from importlib.metadata import version as installed_version

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from service.api.bodies import read_infer_body
from service.api.context import services
from service.api.errors import fail
from service.api.prediction_logging import PREDICTION_ID_HEADER, log_prediction
from service.api.registry import ServedModel, run_shadow, serve
from service.api.resources.health import check_database, refuse_while_not_serving
from service.api.schemas.v2 import (
    InferRequestSchema,
    InferResponseSchema,
    LiveSchema,
    ModelMetadataSchema,
    ModelReadySchema,
    ProtocolErrorSchema,
    ReadySchema,
    ServerMetadataSchema,
)
from service.model_refs import ModelNotFound
from service.serving import inference_protocol as protocol
from service.serving.predictions import prediction_arrays
from service.signatures import input_names
from service.vocabulary import DataError

blp = Blueprint(
    "v2", __name__, url_prefix="/v2", description="The Open Inference Protocol (KServe v2)"
)

SERVER_NAME = "backprop-service"
MODEL_ROUTE = "/models/<name>"
VERSION_ROUTE = "/models/<name>/versions/<version>"

# flask-smorest documents our v1 envelope as every operation's default response; /v2 answers
# the protocol's {"error": "..."} instead.
PROTOCOL_ERROR_DOC = {
    "description": 'Any other error, as the protocol\'s {"error": "..."}',
    "content": {"application/json": {"schema": ProtocolErrorSchema}},
}
INFER_REQUEST_DOC = {
    "required": True,
    "description": "JSON, or (binary tensor extension, tritonclient's default) a JSON header of"
    " Inference-Header-Content-Length bytes followed by the input's raw little-endian bytes."
    " Read whatever the Content-Type says.",
    "content": {
        "application/json": {"schema": InferRequestSchema},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
INFER_RESPONSE_DOC = {
    "description": "JSON, or when an output is asked for in binary a JSON header of"
    " Inference-Header-Content-Length bytes followed by those outputs' bytes",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


def served_model(name: str, version: str | None) -> ServedModel:
    """The model ``name`` (or ``name:version``) stands for; a 404 when none does."""
    ref = name if version is None else f"{name}:{version}"
    try:
        return serve(ref, request.headers.get("X-Routing-Key"))
    except ModelNotFound as error:
        fail(404, str(error))


def protocol_name(served: ServedModel) -> str:
    """What the protocol calls the model: its name, or its id when it has none."""
    return served.name or str(served.model_id)


def protocol_version(served: ServedModel) -> str | None:
    return None if served.version is None else str(served.version)


def infer(body: bytes | memoryview, served: ServedModel) -> Response:
    """Parse the request ``body``, predict as /v1 does, encode the answer."""
    try:
        inference = protocol.parse_infer_request(
            body,
            request.headers.get(protocol.HEADER_LENGTH),
            served.model,
            services().settings.max_predict_rows,
        )
    except protocol.ProtocolError as error:
        fail(400, str(error))
    budget = services().settings.max_request_memory
    try:
        arrays = prediction_arrays(served.model, inference.x, budget, f"inputs.{protocol.INPUT}")
    except DataError as error:  # a row whose outputs overflowed: the protocol's 400
        fail(400, f"{error.path}: {error.message}")
    run_shadow(served, inference.x, arrays["predictions"])
    prediction_id = log_prediction(served, inference.x, arrays)
    outputs = protocol.infer_outputs(served.model, arrays)
    body, header_length = protocol.encode_infer_response(
        inference,
        outputs,
        protocol.output_specs(served.model),
        protocol_name(served),
        protocol_version(served),
        prediction_id,
    )
    headers = {**served.headers(), PREDICTION_ID_HEADER: prediction_id}
    return infer_response(body, header_length, headers)


def infer_response(
    chunks: list[bytes], header_length: int | None, headers: dict[str, str]
) -> Response:
    """The pieces of the body sent one after the other, with their total length."""
    headers["Content-Length"] = str(sum(len(chunk) for chunk in chunks))
    if header_length is None:
        return Response(chunks, mimetype="application/json", headers=headers)
    headers[protocol.HEADER_LENGTH] = str(header_length)
    return Response(chunks, mimetype="application/octet-stream", headers=headers)


@blp.route("/health/live")
class ServerLive(MethodView):
    @blp.response(200, LiveSchema)
    @blp.doc(responses={"default": PROTOCOL_ERROR_DOC})
    def get(self):
        """The process answers"""
        return {"live": True}


@blp.route("/health/ready")
class ServerReady(MethodView):
    @blp.response(200, ReadySchema)
    @blp.alt_response(
        503,
        schema=ProtocolErrorSchema,
        description="Warming up, draining, or the database is unreachable",
    )
    @blp.doc(responses={"default": PROTOCOL_ERROR_DOC})
    def get(self):
        """Every process has warmed its models, none is draining, and the database answers"""
        refuse_while_not_serving()
        try:
            check_database()
        except Exception as error:
            fail(503, f"Not ready: the database is unreachable: {error}")
        return {"ready": True}


@blp.route("")
class ServerMetadata(MethodView):
    @blp.response(200, ServerMetadataSchema)
    @blp.doc(responses={"default": PROTOCOL_ERROR_DOC})
    def get(self):
        """The server's name, version and protocol extensions"""
        return protocol.server_metadata(SERVER_NAME, installed_version(SERVER_NAME))


@blp.route(MODEL_ROUTE)
@blp.route(VERSION_ROUTE)
class ModelMetadata(MethodView):
    @blp.response(200, ModelMetadataSchema)
    @blp.alt_response(404, schema=ProtocolErrorSchema, description="No such model")
    @blp.doc(responses={"default": PROTOCOL_ERROR_DOC})
    def get(self, name: str, version: str | None = None):
        """The model's input (`input`, [-1, n_features]) and outputs"""
        served = served_model(name, version)
        metadata = protocol.model_metadata(
            served.model,
            protocol_name(served),
            protocol_version(served),
            input_names(served.signature),
        )
        return metadata, served.headers()


@blp.route(f"{MODEL_ROUTE}/ready")
@blp.route(f"{VERSION_ROUTE}/ready")
class ModelReady(MethodView):
    @blp.response(200, ModelReadySchema)
    @blp.alt_response(404, schema=ProtocolErrorSchema, description="No such model")
    @blp.doc(responses={"default": PROTOCOL_ERROR_DOC})
    def get(self, name: str, version: str | None = None):
        """The model is loaded and can answer"""
        served = served_model(name, version)
        return {"name": protocol_name(served), "ready": True}, served.headers()


@blp.route(f"{MODEL_ROUTE}/infer")
@blp.route(f"{VERSION_ROUTE}/infer")
class ModelInfer(MethodView):
    @blp.response(200, InferResponseSchema)
    @blp.alt_response(400, schema=ProtocolErrorSchema, description="A bad tensor or body")
    @blp.alt_response(404, schema=ProtocolErrorSchema, description="No such model")
    @blp.alt_response(413, schema=ProtocolErrorSchema, description="Over MAX_REQUEST_BYTES")
    @blp.doc(
        requestBody=INFER_REQUEST_DOC,
        responses={200: INFER_RESPONSE_DOC, "default": PROTOCOL_ERROR_DOC},
    )
    def post(self, name: str, version: str | None = None):
        """Predict for the rows of the `input` tensor (FP32 or FP64, [rows, n_features])"""
        return model_infer(name, version)


def model_infer(name: str, version: str | None = None) -> Response:
    """``POST /v2/models/{name}[/versions/{version}]/infer``; the app routes it here directly
    (DIRECT_VIEWS), past the wrappers of ``ModelInfer.post``, which document the operation."""
    # The body first, as /v1 predict does: one over MAX_REQUEST_BYTES is a 413 whatever the
    # name, and the client is never answered before it has finished sending.
    return infer(read_infer_body(request), served_model(name, version))
