"""``/v1/models``: list, show, delete, predict and weights."""

import numpy as np
from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationParameters
from sqlalchemy.orm import Session

from model_core import Model
from service.context import db, services
from service.db import records
from service.db.models import TrainedModel
from service.db.npz import arrays_to_npz
from service.errors import ErrorSchema, fail
from service.ingest import numeric_matrix
from service.resources.paging import page_of
from service.schemas.models import (
    ModelDetailSchema,
    ModelSchema,
    PredictionSchema,
    PredictRequestSchema,
    WeightsQuerySchema,
    WeightsSchema,
)
from service.serving import predict, standardization, weights_as_arrays, weights_document

blp = Blueprint("models", __name__, url_prefix="/v1/models", description="Trained models")


def read_model(session: Session, model_id: int) -> Model | None:
    blob = records.get_model_blob(session, model_id)
    return None if blob is None else Model.from_bytes(blob)


def load_model(model_id: int) -> Model:
    """The trained model, from this process's cache; a 404 once the model is deleted."""
    session = db()
    if not records.row_exists(session, TrainedModel, model_id):
        services().models.evict(model_id)
        fail(404, f"No model {model_id}.")
    return cached_model(session, model_id)


def cached_model(session: Session, model_id: int) -> Model:
    """The trained model from this process's cache, read from its blob on a miss; a 404 when
    the model has just been deleted. The caller has checked that its row exists."""
    model = services().models.get(model_id, lambda: read_model(session, model_id))
    return model or fail(404, f"No model {model_id}.")


def model_details(row: TrainedModel, model: Model) -> dict:
    """The row's fields that ModelSchema shows, plus the standardisation only the blob holds."""
    shown = {name: getattr(row, name) for name in ModelSchema().fields}
    return {**shown, "standardization": standardization(model)}


def instances_for(model: Model, instances: object) -> np.ndarray:
    """The rows to predict, checked against the model's width and the row limit."""
    x = numeric_matrix(instances, "instances")
    limit = services().settings.max_predict_rows
    if len(x) > limit:
        fail(422, "Too many rows.", {"instances": [f"at most {limit} rows per call"]})
    if x.shape[1] != model.n_features:
        message = f"each row needs {model.n_features} values; got {x.shape[1]}"
        fail(422, "Wrong number of features.", {"instances": [message]})
    return x


NPZ_DOC = {
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    "description": "JSON, or with ?format=npz a file of members W0, b0, W1, b1, ..., mean and"
    " scale (when standardized), classes (classification) and spec (a 0-d string array of JSON:"
    " task, dtype, the layers' units and activations, standardized); np.load(file,"
    " allow_pickle=False) reads every one",
}


def npz_response(model_id: int, model: Model) -> Response:
    disposition = f'attachment; filename="model-{model_id}-weights.npz"'
    return Response(
        arrays_to_npz(**weights_as_arrays(model)),
        mimetype="application/octet-stream",
        headers={"Content-Disposition": disposition},
    )


@blp.route("")
class Models(MethodView):
    @blp.response(200, ModelSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters: PaginationParameters):
        """List models, oldest first"""
        return page_of(records.list_models, pagination_parameters)


@blp.route("/<int:model_id>")
class ModelById(MethodView):
    @blp.response(200, ModelDetailSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, model_id: int):
        """Show a model: spec, data set, job, final metrics, classes, standardization"""
        session = db()
        row = records.get_model(session, model_id) or fail(404, f"No model {model_id}.")
        return model_details(row, cached_model(session, model_id))

    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema)
    def delete(self, model_id: int):
        """Delete a model"""
        session = db()
        model = records.get_model(session, model_id) or fail(404, f"No model {model_id}.")
        records.delete_row(session, model)
        services().models.evict(model_id)


@blp.route("/<int:model_id>/predict")
class ModelPrediction(MethodView):
    @blp.arguments(PredictRequestSchema)
    @blp.response(200, PredictionSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="Bad rows: width, NaN, ragged")
    def post(self, body: dict, model_id: int):
        """Predict labels (and class probabilities) or values for rows of features"""
        model = load_model(model_id)
        return predict(model, instances_for(model, body["instances"]))


@blp.route("/<int:model_id>/weights")
class ModelWeights(MethodView):
    @blp.arguments(WeightsQuerySchema, location="query")
    @blp.response(200, WeightsSchema)
    @blp.doc(responses={200: NPZ_DOC})
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, query: dict, model_id: int):
        """All a forward pass needs: per layer W (inputs, units), b (units,) and the activation,
        the standardisation and the classes; ?format=npz for the same as a file"""
        model = load_model(model_id)
        if query["format"] == "npz":
            return npz_response(model_id, model)
        return weights_document(model)
