"""Trained models, predictions and weights."""

import marshmallow as ma
from marshmallow import validate

from service.db.models import Task


class ModelSchema(ma.Schema):
    id = ma.fields.Integer()
    job_id = ma.fields.Integer()
    dataset_id = ma.fields.Integer(allow_none=True)
    task = ma.fields.Enum(Task, by_value=True)
    n_features = ma.fields.Integer()
    classes = ma.fields.List(ma.fields.Raw(), allow_none=True)
    network = ma.fields.Dict()
    training = ma.fields.Dict()
    metrics = ma.fields.Dict(metadata={"description": "final losses and accuracies"})
    created_at = ma.fields.DateTime()


class PredictRequestSchema(ma.Schema):
    instances = ma.fields.Raw(
        required=True, metadata={"description": "rows of numbers, (n_rows, n_features)"}
    )


class PredictionSchema(ma.Schema):
    predictions = ma.fields.List(ma.fields.Raw())
    probabilities = ma.fields.List(
        ma.fields.List(ma.fields.Float()), metadata={"description": "classification only"}
    )


class WeightsQuerySchema(ma.Schema):
    format = ma.fields.String(load_default="json", validate=validate.OneOf(["json", "npz"]))


class LayerWeightsSchema(ma.Schema):
    W = ma.fields.List(
        ma.fields.List(ma.fields.Float()), metadata={"description": "(inputs, units)"}
    )
    b = ma.fields.List(ma.fields.Float(), metadata={"description": "(units,)"})
