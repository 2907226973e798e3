"""Explanations of a model's predictions, and global feature importance."""

import marshmallow as ma
from marshmallow import validate

from model_core import MAX_INT32
from model_core.explanations import METHODS, QUADRATURES
from service.api.schemas.models import AnsweringModelSchema, PredictRequestSchema, body_form
from service.serving.explanations import DEFAULT_METHOD, DEFAULT_STEPS

MAX_STEPS = 1024
SAMPLE_ROWS = 100_000  # the most rows a background or an importance sample may ask for
DEFAULT_IMPORTANCE_ROWS = 500

METHOD = {
    "description": "integrated_gradients (the default), gradient (df/dx), gradient_x_input"
    " (x * df/dx) or shapley (exact interventional Shapley values, for at most"
    " EXPLAIN_SHAPLEY_MAX_FEATURES features)"
}
TARGET = {
    "anyOf": [{"type": "string"}, {"type": "integer"}],
    "description": 'the output explained: "predicted" (the default for classification: each'
    " row's predicted class) or a class label; for regression an output index (default 0)."
    " f is the output after the last activation (a probability, or the value); for one sigmoid"
    " unit, class 0 is 1 - p",
}
BACKGROUND = {
    "type": "object",
    "required": ["dataset_id", "rows"],
    "additionalProperties": False,
    "properties": {
        "dataset_id": {"type": "integer", "minimum": 1, "maximum": MAX_INT32},
        "rows": {"type": "integer", "minimum": 1, "maximum": SAMPLE_ROWS},
        "seed": {"type": "integer", "minimum": 0, "maximum": MAX_INT32, "default": 0},
    },
}
BASELINE = {
    "oneOf": [
        {"type": "string", "enum": ["mean", "zeros"]},
        {"type": "array", "minItems": 1, "items": {"type": "number"}},
        BACKGROUND,
    ],
    "description": 'integrated_gradients and shapley only: "mean" (the training mean, which'
    ' is the standardised zero; the default when the model standardises), "zeros" (raw zeros;'
    " the default otherwise), a row of n_features numbers, or {dataset_id, rows, seed}: a"
    " seeded sample of that many rows of a data set, averaged over (Shapley's background)",
}


class BackgroundSchema(ma.Schema):
    dataset_id = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_INT32)
    )
    rows = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=SAMPLE_ROWS)
    )
    seed = ma.fields.Integer(
        load_default=0, strict=True, validate=validate.Range(min=0, max=MAX_INT32)
    )


class BaselineField(ma.fields.Field):
    """``"mean"``, ``"zeros"``, a row (its numbers checked against the model later) or a
    background of a data set's rows."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value in ("mean", "zeros"):
            return value
        if isinstance(value, list):
            return value
        if isinstance(value, dict):
            return BackgroundSchema().load(value)
        raise ma.ValidationError(
            'must be "mean", "zeros", a row of numbers or {"dataset_id": D, "rows": N}'
        )


def check_target(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ma.ValidationError('must be "predicted", a class label or an output index')


class ExplanationOptionsSchema(ma.Schema):
    """What both explain and importance take besides the rows."""

    method = ma.fields.String(
        load_default=DEFAULT_METHOD, validate=validate.OneOf(METHODS), metadata=METHOD
    )
    target = ma.fields.Raw(validate=check_target, metadata=TARGET)
    baseline = BaselineField(metadata=BASELINE)
    steps = ma.fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_STEPS),
        metadata={
            "description": f"integrated_gradients only: quadrature points (default {DEFAULT_STEPS})"
        },
    )
    quadrature = ma.fields.String(
        validate=validate.OneOf(list(QUADRATURES)),
        metadata={
            "description": "integrated_gradients only: gauss_legendre (the default; NumPy's"
            " leggauss nodes on [0, 1]) or trapezoid (steps + 1 evenly spaced points)"
        },
    )


class ExplainRequestSchema(PredictRequestSchema, ExplanationOptionsSchema):
    """The rows in any of predict's JSON forms, and the options."""


OPTIONS = tuple(ExplanationOptionsSchema().fields)

# What ExplainRequestSchema accepts, one form of the rows at a time, for the OpenAPI document.
EXPLAIN_BODY = {
    "required": True,
    "description": "The rows in one of predict's three JSON forms: instances (positional),"
    " records or columns + data (by the feature names of the model's signature); and the"
    " options",
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    body_form(
                        ExplainRequestSchema, "ExplainInstancesSchema", ("instances",), OPTIONS
                    ),
                    body_form(
                        ExplainRequestSchema,
                        "ExplainRecordsSchema",
                        ("records",),
                        ("extra", *OPTIONS),
                    ),
                    body_form(
                        ExplainRequestSchema,
                        "ExplainColumnsSchema",
                        ("columns", "data"),
                        ("extra", *OPTIONS),
                    ),
                ]
            }
        }
    },
}


class ImportanceRequestSchema(ExplanationOptionsSchema):
    dataset_id = ma.fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_INT32),
        metadata={"description": "a stored data set whose columns are the model's inputs"},
    )
    rows = ma.fields.Integer(
        load_default=DEFAULT_IMPORTANCE_ROWS,
        strict=True,
        validate=validate.Range(min=1, max=SAMPLE_ROWS),
        metadata={
            "description": f"how many of its rows to explain (default {DEFAULT_IMPORTANCE_ROWS};"
            " all of them when it has fewer), drawn without replacement"
        },
    )
    seed = ma.fields.Integer(
        load_default=0,
        strict=True,
        validate=validate.Range(min=0, max=MAX_INT32),
        metadata={"description": "of the sample's generator (NumPy's default_rng)"},
    )


class ExplanationRowSchema(ma.Schema):
    target = ma.fields.Raw(metadata={"description": "the class label or output index explained"})
    f_x = ma.fields.Float(metadata={"description": "f at the row"})
    f_baseline = ma.fields.Float(
        metadata={"description": "f at the baseline, averaged over background rows (IG, Shapley)"}
    )
    completeness_error = ma.fields.Float(
        metadata={
            "description": "|sum(attributions) - (f_x - f_baseline)| (IG: the quadrature's error;"
            " Shapley: rounding only)"
        }
    )
    attributions = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Float(),
        metadata={"description": "per feature name, in input order"},
    )


class ExplanationSchema(AnsweringModelSchema):
    method = ma.fields.String()
    target = ma.fields.Raw(metadata={"description": "as requested (or its default)"})
    baseline = ma.fields.Raw(
        metadata={"description": '"mean", "zeros", "row" or {dataset_id, rows, seed} as used'}
    )
    steps = ma.fields.Integer()
    quadrature = ma.fields.String()
    explanations = ma.fields.List(ma.fields.Nested(ExplanationRowSchema))


class ImportanceSchema(AnsweringModelSchema):
    dataset_id = ma.fields.Integer()
    rows = ma.fields.Integer(metadata={"description": "the rows explained"})
    seed = ma.fields.Integer()
    method = ma.fields.String()
    target = ma.fields.Raw(metadata={"description": "as requested (or its default)"})
    baseline = ma.fields.Raw(
        metadata={"description": '"mean", "zeros", "row" or {dataset_id, rows, seed} as used'}
    )
    steps = ma.fields.Integer()
    quadrature = ma.fields.String()
    importance = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Float(),
        metadata={"description": "mean |attribution| per feature name, in input order"},
    )
