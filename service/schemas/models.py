"""Trained models, predictions and weights."""

import marshmallow as ma
from marshmallow import validate

from model_core.activations import ACTIVATIONS, LEAKY_RELU_SLOPE
from model_core.specs import DTYPES
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


STANDARDIZATION = "raw rows become (x - mean) / scale first; null: they are used as they are"


class StandardizationSchema(ma.Schema):
    mean = ma.fields.List(ma.fields.Float(), metadata={"description": "(n_features,)"})
    scale = ma.fields.List(ma.fields.Float(), metadata={"description": "(n_features,)"})


class ModelDetailSchema(ModelSchema):
    standardization = ma.fields.Nested(
        StandardizationSchema, allow_none=True, metadata={"description": STANDARDIZATION}
    )


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
    activation = ma.fields.String(
        validate=validate.OneOf(list(ACTIVATIONS)),
        metadata={
            "description": f"a = activation(a @ W + b); leaky_relu: {LEAKY_RELU_SLOPE} z below 0"
        },
    )


class WeightsSchema(ma.Schema):
    task = ma.fields.String(validate=validate.OneOf([task.value for task in Task]))
    dtype = ma.fields.String(
        validate=validate.OneOf(DTYPES), metadata={"description": "the arithmetic's precision"}
    )
    layers = ma.fields.List(ma.fields.Nested(LayerWeightsSchema))
    standardization = ma.fields.Nested(
        StandardizationSchema, allow_none=True, metadata={"description": STANDARDIZATION}
    )
    classes = ma.fields.List(
        ma.fields.Raw(),
        allow_none=True,
        metadata={
            "description": "labels in the order of the output units; for one sigmoid unit"
            " classes[1] above 0.5, else classes[0]"
        },
    )
