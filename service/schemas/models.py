"""Trained models, predictions and weights."""

import marshmallow as ma
from marshmallow import validate

from model_core import MAX_INT32
from model_core.activations import ACTIVATIONS, LEAKY_RELU_SLOPE
from model_core.specs import DTYPES
from service.db.models import NAME_PATTERN, Task
from service.model_refs import NAME_RULE, is_name


def check_name(text: str) -> None:
    """The marshmallow validator of model names and aliases."""
    if not is_name(text):
        raise ma.ValidationError(f"must be {NAME_RULE}")


REF_DESCRIPTION = (
    "an id (42), a name (digits: its latest version), name:version (digits:3)"
    " or name@alias (digits@production)"
)


class ModelSchema(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String(allow_none=True, metadata={"description": "the registered name"})
    version = ma.fields.Integer(allow_none=True, metadata={"description": "its version"})
    aliases = ma.fields.Pluck(
        "AliasSchema",
        "alias",
        many=True,
        metadata={"description": "the aliases that point at this version"},
    )
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


class AnsweringModelSchema(ma.Schema):
    """Which model answered (also in the X-Model-Id, X-Model-Name, X-Model-Version headers)."""

    model_id = ma.fields.Integer()
    name = ma.fields.String(allow_none=True)
    version = ma.fields.Integer(allow_none=True)


class PredictionSchema(AnsweringModelSchema):
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


class AliasRequestSchema(ma.Schema):
    version = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_INT32)
    )


class AliasSchema(ma.Schema):
    name = ma.fields.String()
    alias = ma.fields.String(metadata={"pattern": f"^{NAME_PATTERN}$"})
    version = ma.fields.Integer()
