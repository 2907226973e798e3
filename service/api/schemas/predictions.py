"""The prediction log, feedback, live performance and drift."""

import math
from numbers import Real

import marshmallow as ma
from marshmallow import validate

from model_core import MAX_INT32
from service.api.schemas.models import AnsweringModelSchema
from service.serving.live import WINDOWS

PREDICTION_ID_PATTERN = "^[0-9a-f]{32}$"
MAX_PREDICTIONS_PER_PAGE = 1000
MAX_FEEDBACK_ITEMS = 10_000
MAX_LABEL_LENGTH = 256


class PredictionQuerySchema(ma.Schema):
    after = ma.fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=2**62),
        metadata={"description": "return rows after this log id (a page's last row's id)"},
    )
    limit = ma.fields.Integer(
        load_default=100, validate=validate.Range(min=1, max=MAX_PREDICTIONS_PER_PAGE)
    )
    since = ma.fields.AwareDateTime(
        metadata={"description": "rows logged at this time or later (ISO 8601, with offset)"}
    )
    until = ma.fields.AwareDateTime(
        metadata={"description": "rows logged before this time (ISO 8601, with offset)"}
    )


class LoggedRowSchema(ma.Schema):
    row = ma.fields.Integer(metadata={"description": "the row's index in its request"})
    inputs = ma.fields.List(
        ma.fields.Float(),
        allow_none=True,
        metadata={"description": "null when PREDICTION_LOG_INPUTS=off"},
    )
    prediction = ma.fields.Raw(metadata={"description": "the label or value(s) answered"})
    probabilities = ma.fields.List(ma.fields.Float(), allow_none=True)
    label = ma.fields.Raw(
        allow_none=True, metadata={"description": "the truth, once fed back (label or target)"}
    )


class LoggedRequestFields(AnsweringModelSchema):
    prediction_id = ma.fields.String()
    alias = ma.fields.String(allow_none=True)
    split_arm = ma.fields.String(allow_none=True)
    latency_ms = ma.fields.Float(metadata={"description": "the whole request's, in ms"})
    created_at = ma.fields.DateTime()


class LoggedPredictionRowSchema(LoggedRequestFields, LoggedRowSchema):
    """One row of the log, as a model's listing pages through them."""

    id = ma.fields.Integer(metadata={"description": "the log's order: pass it as ?after="})


class LoggedPredictionSchema(LoggedRequestFields):
    """One logged request and its rows."""

    rows = ma.fields.List(ma.fields.Nested(LoggedRowSchema))


class LabelField(ma.fields.Field):
    """A class label (a string, or an integer class) or a finite number."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and len(value) <= MAX_LABEL_LENGTH:
            return value
        if isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value):
            return value
        raise ma.ValidationError(
            f"must be a string of at most {MAX_LABEL_LENGTH} characters or a finite number"
        )


class TargetField(ma.fields.Field):
    """A regression target: a finite number, or a list of them (several outputs)."""

    def _deserialize(self, value, attr, data, **kwargs):
        values = value if isinstance(value, list) and value else [value]
        if all(
            isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in values
        ):
            return value
        raise ma.ValidationError("must be a finite number or a non-empty list of them")


class FeedbackItemSchema(ma.Schema):
    prediction_id = ma.fields.String(
        required=True,
        validate=validate.Regexp(PREDICTION_ID_PATTERN),
        metadata={"pattern": PREDICTION_ID_PATTERN},
    )
    row = ma.fields.Integer(
        load_default=0, strict=True, validate=validate.Range(min=0, max=MAX_INT32)
    )
    label = LabelField(
        metadata={
            "description": "the true class (classification)",
            "anyOf": [{"type": "string", "maxLength": MAX_LABEL_LENGTH}, {"type": "number"}],
        }
    )
    target = TargetField(
        metadata={
            "description": "the true value (regression)",
            "anyOf": [
                {"type": "number"},
                {"type": "array", "minItems": 1, "items": {"type": "number"}},
            ],
        }
    )

    @ma.validates_schema
    def check_one_truth(self, data: dict, **_kwargs) -> None:
        given = [field for field in ("label", "target") if field in data]
        if len(given) != 1:
            raise ma.ValidationError({"label": ["give exactly one of label and target"]})


class FeedbackRequestSchema(ma.Schema):
    items = ma.fields.List(
        ma.fields.Nested(FeedbackItemSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_FEEDBACK_ITEMS),
    )


class UnknownItemSchema(ma.Schema):
    index = ma.fields.Integer(metadata={"description": "the item's place in items"})
    prediction_id = ma.fields.String()
    row = ma.fields.Integer()


class FeedbackSchema(ma.Schema):
    stored = ma.fields.Integer(metadata={"description": "items whose row was found and labelled"})
    unknown = ma.fields.List(
        ma.fields.Nested(UnknownItemSchema),
        metadata={"description": "items naming no logged row of this tenant"},
    )


class WindowQuerySchema(ma.Schema):
    window = ma.fields.String(load_default="1d", validate=validate.OneOf(list(WINDOWS)))


class ClassRecallSchema(ma.Schema):
    label = ma.fields.Raw()
    recall = ma.fields.Float()
    support = ma.fields.Integer()


class HourSchema(ma.Schema):
    hour = ma.fields.DateTime(metadata={"description": "the hour's start, UTC"})
    predictions = ma.fields.Integer()
    labelled = ma.fields.Integer()
    accuracy = ma.fields.Float(
        allow_none=True,
        metadata={"description": "share of the labelled rows answered right (classification)"},
    )


class VersionPerformanceSchema(AnsweringModelSchema):
    predictions = ma.fields.Integer(metadata={"description": "rows logged in the window"})
    labelled = ma.fields.Integer(metadata={"description": "of which fed back a label"})
    scored = ma.fields.Integer(
        metadata={"description": "of which scored: inputs kept, label among the classes"}
    )
    accuracy = ma.fields.Float(metadata={"description": "classification, once scored > 0"})
    per_class = ma.fields.List(ma.fields.Nested(ClassRecallSchema))
    mse = ma.fields.Float(metadata={"description": "regression, once scored > 0"})
    mae = ma.fields.Float()
    hourly = ma.fields.List(
        ma.fields.Nested(HourSchema),
        metadata={"description": "per hour of the window's newest 100,000 rows"},
    )


class PerformanceSchema(ma.Schema):
    window = ma.fields.String()
    versions = ma.fields.List(ma.fields.Nested(VersionPerformanceSchema))


class ColumnDriftSchema(ma.Schema):
    psi = ma.fields.Float()
    ks = ma.fields.Float(
        allow_none=True,
        metadata={"description": "Kolmogorov-Smirnov D; null when the inputs were not kept"},
    )
    p_value = ma.fields.Float(allow_none=True)
    drifted = ma.fields.Boolean()


class FeatureDriftSchema(ColumnDriftSchema):
    name = ma.fields.String()


class VersionDriftSchema(AnsweringModelSchema):
    rows = ma.fields.Integer(metadata={"description": "rows of the window compared"})
    message = ma.fields.String(
        metadata={"description": "why there are no figures (too few rows, no reference)"}
    )
    drifted = ma.fields.Boolean(metadata={"description": "whether any feature drifted"})
    features = ma.fields.List(ma.fields.Nested(FeatureDriftSchema))
    predictions = ma.fields.Nested(ColumnDriftSchema)


class ThresholdsSchema(ma.Schema):
    psi = ma.fields.Float(metadata={"description": "DRIFT_PSI"})
    ks = ma.fields.Float(metadata={"description": "DRIFT_KS"})
    p = ma.fields.Float(metadata={"description": "DRIFT_P (divided by the number of features)"})


class DriftSchema(ma.Schema):
    window = ma.fields.String()
    thresholds = ma.fields.Nested(ThresholdsSchema)
    versions = ma.fields.List(ma.fields.Nested(VersionDriftSchema))
