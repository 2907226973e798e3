"""Trained models, predictions and weights."""

import marshmallow as ma
from marshmallow import validate

from model_core import MAX_INT32
from model_core.activations import ACTIVATIONS, LEAKY_RELU_SLOPE
from model_core.specs import DTYPES
from service.api.schemas.datasets import LABELS, VALUES, number_rows
from service.model_refs import NAME_RULE, is_name
from service.vocabulary import MAX_NAME_LENGTH, NAME_PATTERN, Task


def check_name(text: str) -> None:
    """The marshmallow validator of model names and aliases."""
    if not is_name(text):
        raise ma.ValidationError(f"must be {NAME_RULE}")


def model_name_field(description: str) -> ma.fields.String:
    """The optional ``model_name`` of a job or sweep body: ``description`` says which model
    becomes the name's next version."""
    return ma.fields.String(
        validate=[validate.Length(max=MAX_NAME_LENGTH), check_name],
        metadata={"description": description, "pattern": f"^{NAME_PATTERN}$"},
    )


REF_DESCRIPTION = (
    "an id (42), a name (digits: its latest version), name:version (digits:3)"
    " or name@alias (digits@production)"
)
NUMBER_PATTERN = "[0-9]{1,10}"
REF_SCHEMA = {
    "type": "string",
    "pattern": f"^({NUMBER_PATTERN}|{NAME_PATTERN}(:{NUMBER_PATTERN}|@{NAME_PATTERN})?)$",
}
NAME_SCHEMA = {"type": "string", "pattern": f"^{NAME_PATTERN}$"}
DELETABLE_REF_SCHEMA = {
    "type": "string",
    "pattern": f"^({NUMBER_PATTERN}|{NAME_PATTERN}:{NUMBER_PATTERN})$",
}


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
    parent_model_id = ma.fields.Integer(
        allow_none=True,
        metadata={"description": "the model it was fine-tuned from (network.init_from), if any"},
    )
    created_at = ma.fields.DateTime()


STANDARDIZATION = "raw rows become (x - mean) / scale first; null: they are used as they are"


class StandardizationSchema(ma.Schema):
    mean = ma.fields.List(ma.fields.Float(), metadata={"description": "(n_features,)"})
    scale = ma.fields.List(ma.fields.Float(), metadata={"description": "(n_features,)"})


def statistic(description: str) -> ma.fields.Float:
    return ma.fields.Float(allow_none=True, metadata={"description": description})


class SignatureInputSchema(ma.Schema):
    name = ma.fields.String()
    dtype = ma.fields.String(
        metadata={"description": "float32 or float64: what the model computes in"}
    )
    min = statistic("over the training split's raw rows; null when not known")
    max = statistic("over the training split's raw rows")
    mean = statistic("over the training split's raw rows")
    std = statistic("population standard deviation over the training split's raw rows")


class SignatureOutputsSchema(ma.Schema):
    classes = ma.fields.List(
        ma.fields.Raw(), metadata={"description": "classification: the labels in output order"}
    )
    type = ma.fields.String(metadata={"description": "classification: int, string, ..."})
    targets = ma.fields.List(
        ma.fields.String(), metadata={"description": "regression: the target names, in order"}
    )


class SignatureSchema(ma.Schema):
    named = ma.fields.Boolean(
        metadata={
            "description": "false when the training data named no features: the inputs are"
            " x0, x1, ... and callers send positional rows"
        }
    )
    task = ma.fields.String(validate=validate.OneOf([task.value for task in Task]))
    inputs = ma.fields.List(
        ma.fields.Nested(SignatureInputSchema), metadata={"description": "in input order"}
    )
    outputs = ma.fields.Nested(SignatureOutputsSchema)


class AncestorSchema(ma.Schema):
    model_id = ma.fields.Integer()
    name = ma.fields.String(allow_none=True)
    version = ma.fields.Integer(allow_none=True)
    deleted = ma.fields.Boolean(
        metadata={"description": "the model is gone: its name and own parent are unknown"}
    )


class ModelDetailSchema(ModelSchema):
    standardization = ma.fields.Nested(
        StandardizationSchema, allow_none=True, metadata={"description": STANDARDIZATION}
    )
    signature = ma.fields.Nested(
        SignatureSchema,
        metadata={"description": "the model's contract: its named inputs and its outputs"},
    )
    lineage = ma.fields.List(
        ma.fields.Nested(AncestorSchema),
        metadata={
            "description": "the models it descends from by fine-tuning: its parent, the"
            " parent's parent... (empty: trained from fresh weights)"
        },
    )


INSTANCES = number_rows("rows of numbers, (n_rows, n_features): the model's n_features")
RECORDS = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "object", "additionalProperties": {"type": "number"}},
    "description": "one object per row, {feature name: number}, every input of the model's"
    " signature in each (MLflow's dataframe_records)",
}
COLUMNS = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string"},
    "description": "the feature names of data's columns, in any order (MLflow's dataframe_split)",
}
DATA = number_rows("rows of numbers, one per row, in the order of columns")
PREDICT_FORMS = (
    "send exactly one of: instances (rows of numbers in input order), records (one object per"
    " row, by feature name), or columns with data (names, then rows in their order)"
)


class PredictRequestSchema(ma.Schema):
    """One of three forms of the rows: ``instances``, ``records``, or ``columns`` + ``data``."""

    instances = ma.fields.Raw(metadata=INSTANCES)
    records = ma.fields.Raw(metadata=RECORDS)
    columns = ma.fields.Raw(metadata=COLUMNS)
    data = ma.fields.Raw(metadata=DATA)
    extra = ma.fields.String(
        validate=validate.OneOf(["error", "ignore"]),
        metadata={
            "description": "records and columns: a feature the model does not take is an error"
            " (the default), or is ignored"
        },
    )

    routing_key = ma.fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={
            "description": "on an alias split between versions: the same key always goes to the"
            " same version (else the X-Routing-Key header; without either, at random by weight)"
        },
    )

    @ma.validates_schema
    def check_one_form(self, data: dict, **_kwargs) -> None:
        """None of the forms is an error on ``instances``, the first; several, on each."""
        given = [form for form in ("instances", "records", "columns", "data") if form in data]
        if not given:
            raise ma.ValidationError({"instances": [f"missing: {PREDICT_FORMS}"]})
        if ("columns" in data) != ("data" in data):
            alone = "columns" if "columns" in data else "data"
            raise ma.ValidationError({alone: [f"columns and data go together: {PREDICT_FORMS}"]})
        if len(set(given) - {"data"}) > 1:
            raise ma.ValidationError({form: [PREDICT_FORMS] for form in given})


def body_form(
    schema: type[ma.Schema], name: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> type[ma.Schema]:
    """``schema``'s fields ``required`` alone, each required, and its ``optional`` ones: one
    form of a body that takes several, for the OpenAPI document."""
    fields = {field: schema().fields[field] for field in required}
    for field in fields.values():
        field.required = True
    fields.update({field: schema().fields[field] for field in optional})
    return ma.Schema.from_dict(fields, name=name)


PREDICT_FORM_SCHEMAS = [
    body_form(PredictRequestSchema, "PredictInstancesSchema", ("instances",), ("routing_key",)),
    body_form(PredictRequestSchema, "PredictRecordsSchema", ("records",), ("extra", "routing_key")),
    body_form(
        PredictRequestSchema,
        "PredictColumnsSchema",
        ("columns", "data"),
        ("extra", "routing_key"),
    ),
]


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


class ExportQuerySchema(ma.Schema):
    format = ma.fields.String(
        load_default="onnx",
        validate=validate.OneOf(["onnx", "npz"]),
        metadata={"description": "onnx (the default): an ONNX graph; npz: the weights"},
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


def version_field(**options) -> ma.fields.Integer:
    return ma.fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_INT32), **options)


MAX_SPLIT_VERSIONS = 4


class ArmSchema(ma.Schema):
    version = version_field(required=True)
    weight = ma.fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=1_000_000),
        metadata={"description": "its share of the requests is weight / the sum of weights"},
    )


class ShadowSchema(ma.Schema):
    version = version_field(required=True)
    sample = ma.fields.Float(
        load_default=1.0,
        validate=validate.Range(min=0.0, max=1.0, min_inclusive=False),
        metadata={"description": "the share of the alias's requests also run on it"},
    )


class AliasRequestSchema(ma.Schema):
    """One version, or a canary split of 1 to 4 versions by weight; and maybe a shadow."""

    version = version_field(metadata={"description": "the one version (a split of one)"})
    versions = ma.fields.List(
        ma.fields.Nested(ArmSchema),
        validate=validate.Length(min=1, max=MAX_SPLIT_VERSIONS),
        metadata={"description": "a canary split: each version answers its weight's share"},
    )
    shadow = ma.fields.Nested(
        ShadowSchema,
        allow_none=True,
        metadata={"description": "a version that also runs a sample of the requests, unseen"},
    )

    @ma.validates_schema
    def check_versions(self, data: dict, **_kwargs) -> None:
        if ("version" in data) == ("versions" in data):
            raise ma.ValidationError({"version": ["send exactly one of version and versions"]})
        arms = data.get("versions", [])
        seen = [arm["version"] for arm in arms]
        for index, version in enumerate(seen):
            if version in seen[:index]:
                raise ma.ValidationError({f"versions[{index}].version": ["appears twice"]})
        shadow = data.get("shadow")
        serving = seen or [data.get("version")]
        if shadow and shadow["version"] in serving:
            message = "a shadow is a version that does not answer: not one of the alias's"
            raise ma.ValidationError({"shadow.version": [message]})


class AliasQuerySchema(ma.Schema):
    force = ma.fields.Boolean(
        load_default=False,
        metadata={
            "description": "move the alias even to a version whose signature would break its"
            " callers (the answer's changes say what changed)"
        },
    )


class BoundsSchema(ma.Schema):
    min = ma.fields.Float(allow_nan=False, metadata={"description": "the figure must be at least"})
    max = ma.fields.Float(allow_nan=False, metadata={"description": "the figure must be at most"})

    @ma.validates_schema
    def check_some_bound(self, data: dict, **_kwargs) -> None:
        if not data:
            raise ma.ValidationError("give min, max or both")


class PromoteRequestSchema(ma.Schema):
    """Evaluate a version on a data set, and move the alias to it only if it passes."""

    version = version_field(required=True)
    dataset_id = ma.fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_INT32),
        metadata={"description": "held-out rows: never the data set the version trained on"},
    )
    require = ma.fields.Dict(
        keys=ma.fields.String(
            validate=validate.OneOf(["accuracy", "loss", "r2", "mse", "mae"]),
            metadata={"description": "accuracy, loss (classification); r2, loss, mse, mae"},
        ),
        values=ma.fields.Nested(BoundsSchema),
        load_default=dict,
        metadata={"description": "evaluation figures and their bounds, all to hold"},
    )
    not_worse_than_current = ma.fields.Boolean(
        load_default=False,
        metadata={
            "description": "also evaluate the alias's current version (a split's largest weight)"
            " and require the candidate to be no worse on every figure of require"
        },
    )


class ShadowFiguresSchema(ShadowSchema):
    requests_compared = ma.fields.Integer()
    requests_dropped = ma.fields.Integer(metadata={"description": "its queue was full"})
    rows_compared = ma.fields.Integer()
    agreement = ma.fields.Float(
        allow_none=True,
        metadata={"description": "classification: the share of rows predicted the same label"},
    )
    mean_abs_difference = ma.fields.Float(allow_none=True, metadata={"description": "regression"})
    max_abs_difference = ma.fields.Float(allow_none=True, metadata={"description": "regression"})


class ServedArmSchema(ArmSchema):
    served = ma.fields.Integer(
        metadata={"description": "requests it answered since the alias was set (all processes)"}
    )


class AliasSchema(ma.Schema):
    name = ma.fields.String()
    alias = ma.fields.String(metadata={"pattern": f"^{NAME_PATTERN}$"})
    version = ma.fields.Integer(metadata={"description": "the version of the largest weight"})
    versions = ma.fields.List(ma.fields.Nested(ServedArmSchema))
    shadow = ma.fields.Nested(ShadowFiguresSchema, allow_none=True)
    changes = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "what a move changed of the signature callers rely on (only a"
            " forced move changes anything), e.g. inputs[2]: petal_length -> petal_width"
        },
    )


EVALUATION_TARGETS = {
    "type": "array",
    "minItems": 1,
    "items": {"anyOf": [*LABELS["items"]["anyOf"], *VALUES["items"]["anyOf"]]},
    "description": "one per row: a label of the model's (classification), or a value, or a"
    " list of values, for each output (regression)",
}


class EvaluateRequestSchema(ma.Schema):
    """Either ``dataset_id``, or ``instances`` with ``targets``."""

    dataset_id = ma.fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_INT32),
        metadata={"description": "a stored data set whose columns are the model's inputs"},
    )
    instances = ma.fields.Raw(metadata=INSTANCES)
    targets = ma.fields.Raw(metadata=EVALUATION_TARGETS)

    @ma.validates_schema
    def check_source(self, data: dict, **_kwargs) -> None:
        inline = ("instances", "targets")
        if "dataset_id" in data:
            extra = [field for field in inline if field in data]
            if extra:
                raise ma.ValidationError(
                    {field: ["not allowed with dataset_id"] for field in extra}
                )
            return
        missing = [field for field in inline if field not in data]
        if missing:
            message = "required unless dataset_id is given"
            raise ma.ValidationError({field: [message] for field in missing})


# What EvaluateRequestSchema accepts, one form at a time, for the OpenAPI document.
EVALUATE_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    body_form(EvaluateRequestSchema, "EvaluateDatasetSchema", ("dataset_id",)),
                    body_form(
                        EvaluateRequestSchema, "EvaluateRowsSchema", ("instances", "targets")
                    ),
                ]
            }
        }
    },
}


class ClassMetricsSchema(ma.Schema):
    label = ma.fields.Raw(metadata={"description": "the class"})
    precision = ma.fields.Float(
        metadata={
            "description": "of the rows predicted as this class, the share that are it;"
            " 0 when none is"
        }
    )
    recall = ma.fields.Float(
        metadata={
            "description": "of the rows of this class, the share predicted as it;"
            " 0 when there are none"
        }
    )
    support = ma.fields.Integer(metadata={"description": "rows of this class"})


class ConfusionMatrixSchema(ma.Schema):
    labels = ma.fields.List(
        ma.fields.Raw(), metadata={"description": "the model's classes, in its output order"}
    )
    counts = ma.fields.List(
        ma.fields.List(ma.fields.Integer()),
        metadata={
            "description": "counts[i][j]: rows of class labels[i] predicted as labels[j]; only"
            " when the model has at most MAX_CONFUSION_CLASSES classes"
        },
    )
    entries = ma.fields.List(
        ma.fields.List(ma.fields.Integer(), validate=validate.Length(equal=3)),
        metadata={
            "description": "instead of counts when the model has more than"
            " MAX_CONFUSION_CLASSES classes: [i, j, count] for each pair that occurs, count rows"
            " of class labels[i] predicted as labels[j], sorted by i then j"
        },
    )


class OutputMetricsSchema(ma.Schema):
    output = ma.fields.Integer(metadata={"description": "the target column, from 0"})
    mse = ma.fields.Float()
    mae = ma.fields.Float()
    r2 = ma.fields.Float(allow_none=True)


R2 = (
    "1 - SS_res / SS_tot; a constant target scores 1 when predicted exactly, else 0;"
    " null for a single row"
)


class WeightedFiguresSchema(ma.Schema):
    loss = ma.fields.Float(metadata={"description": "sum(w_i l_i) / sum(w_i), as training's"})
    accuracy = ma.fields.Float(
        allow_none=True,
        metadata={
            "description": "classification: the weights of the rows"
            " predicted right over all the weights"
        },
    )
    mse = ma.fields.Float(allow_none=True, metadata={"description": "regression"})
    mae = ma.fields.Float(allow_none=True, metadata={"description": "regression"})


class EvaluationSchema(AnsweringModelSchema):
    dataset_id = ma.fields.Integer(
        allow_none=True, metadata={"description": "the data set evaluated; null for inline rows"}
    )
    task = ma.fields.String(validate=validate.OneOf([task.value for task in Task]))
    n_samples = ma.fields.Integer(metadata={"description": "rows evaluated"})
    loss_function = ma.fields.String(metadata={"description": "the model's loss"})
    loss = ma.fields.Float(
        metadata={"description": "its mean over the rows, as val_loss in training (no l2 term)"}
    )
    accuracy = ma.fields.Float(metadata={"description": "classification only"})
    per_class = ma.fields.List(
        ma.fields.Nested(ClassMetricsSchema),
        metadata={"description": "classification only: every class of the model, in order"},
    )
    confusion_matrix = ma.fields.Nested(
        ConfusionMatrixSchema, metadata={"description": "classification only"}
    )
    mse = ma.fields.Float(metadata={"description": "regression only: mean over the outputs"})
    mae = ma.fields.Float(metadata={"description": "regression only: mean over the outputs"})
    r2 = ma.fields.Float(
        allow_none=True, metadata={"description": f"regression only, mean over the outputs: {R2}"}
    )
    per_output = ma.fields.List(
        ma.fields.Nested(OutputMetricsSchema), metadata={"description": "regression only"}
    )
    weighted = ma.fields.Nested(
        WeightedFiguresSchema,
        allow_none=True,
        metadata={
            "description": "a data set with row weights: the figures weighted by them (the"
            " others are unweighted); null otherwise"
        },
    )


class GateEvaluationSchema(ma.Schema):
    version = ma.fields.Integer()
    evaluation = ma.fields.Nested(EvaluationSchema)


class PromotionSchema(ma.Schema):
    alias = ma.fields.Nested(AliasSchema, metadata={"description": "the alias, moved"})
    candidate = ma.fields.Nested(GateEvaluationSchema)
    current = ma.fields.Nested(
        GateEvaluationSchema,
        allow_none=True,
        metadata={"description": "with not_worse_than_current: the version it replaced"},
    )
