"""Data set uploads (JSON, a multipart CSV, Parquet or .npz file, built-in sample) and the data set
as shown."""

from dataclasses import dataclass

import marshmallow as ma
from marshmallow import validate
from werkzeug.datastructures import FileStorage

from service.api.schemas.text import dataset_name_field
from service.datasets.ingest import FILE_FORMATS, MAX_INFERRED_CLASSES
from service.datasets.samples import SAMPLE_NAMES
from service.db.models import Dataset
from service.vocabulary import Task

TASKS = [task.value for task in Task]
SAMPLE_WEIGHTS = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "number", "minimum": 0},
    "description": "optional: each row's weight in the loss, a finite number >= 0 per row (not"
    " all 0); training's losses become sum(w_i l_i) / sum(w_i)",
}


class DatasetCreateSchema(ma.Schema):
    """Either ``builtin``, or ``task`` with ``features`` and ``targets``."""

    name = dataset_name_field()
    builtin = ma.fields.String(validate=validate.OneOf(SAMPLE_NAMES))
    task = ma.fields.String(validate=validate.OneOf(TASKS))
    features = ma.fields.Raw(metadata={"description": "rows of numbers, (n_samples, n_features)"})
    targets = ma.fields.Raw(
        metadata={"description": "one label or value per row, or a list of values per row"}
    )
    sample_weights = ma.fields.Raw(metadata=SAMPLE_WEIGHTS)

    @ma.validates_schema
    def check_source(self, data: dict, **_kwargs) -> None:
        inline = ("task", "features", "targets")
        if "builtin" in data:
            extra = [field for field in (*inline, "sample_weights") if field in data]
            if extra:
                raise ma.ValidationError({field: ["not allowed with builtin"] for field in extra})
            return
        missing = [field for field in inline if field not in data]
        if missing:
            message = "required unless builtin is given"
            raise ma.ValidationError({field: [message] for field in missing})


NUMBER = {"type": "number"}


def number_rows(description: str) -> dict:
    """The JSON Schema of a non-empty matrix of numbers, as ``ingest.numeric_matrix`` reads it
    (that every row is as long, JSON Schema cannot say)."""
    row = {"type": "array", "minItems": 1, "items": NUMBER}
    return {"type": "array", "minItems": 1, "items": row, "description": description}


FEATURES = number_rows("rows of numbers, (n_samples, n_features), every row as long")
LABELS = {
    "type": "array",
    "minItems": 1,
    "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
    "description": "one label per row, at least two different ones",
}
VALUES = {
    "type": "array",
    "minItems": 1,
    "items": {"anyOf": [{"type": "number"}, {"type": "array", "minItems": 1, "items": NUMBER}]},
    "description": "one value, or one list of values (every one as long), per row",
}


class BuiltinDatasetSchema(ma.Schema):
    """A built-in sample (documentation of the JSON body's first form)."""

    name = dataset_name_field()
    builtin = ma.fields.String(required=True, validate=validate.OneOf(SAMPLE_NAMES))


def inline_dataset_schema(task: Task, targets: dict) -> type[ma.Schema]:
    """Rows of ``task`` sent inline (documentation of the JSON body's other forms)."""
    fields = {
        "name": dataset_name_field(),
        "task": ma.fields.String(required=True, validate=validate.OneOf([task.value])),
        "features": ma.fields.Raw(required=True, metadata=FEATURES),
        "targets": ma.fields.Raw(required=True, metadata=targets),
        "sample_weights": ma.fields.Raw(metadata=SAMPLE_WEIGHTS),
    }
    return ma.Schema.from_dict(fields, name=f"{task.value.title()}DatasetSchema")


# What DatasetCreateSchema accepts, one form at a time, for the OpenAPI document.
DATASET_BODY_FORMS = [
    BuiltinDatasetSchema,
    inline_dataset_schema(Task.CLASSIFICATION, LABELS),
    inline_dataset_schema(Task.REGRESSION, VALUES),
]


class ColumnList(ma.fields.String):
    """Column names, comma-separated in a form field; loaded as a list of stripped names."""

    def _deserialize(self, value, attr, data, **kwargs) -> list[str]:
        text = super()._deserialize(value, attr, data, **kwargs)
        names = [name.strip() for name in text.split(",")]
        if "" in names:
            raise ma.ValidationError("has an empty column name; separate names by single commas")
        return names


class UploadedFile(ma.fields.Field):
    """The multipart part holding a file (not a plain form field)."""

    def _deserialize(self, value, attr, data, **kwargs) -> FileStorage:
        if not isinstance(value, FileStorage):
            raise ma.ValidationError("must be a file")
        return value


class FileUploadSchema(ma.Schema):
    """The fields of a data set file upload (multipart/form-data)."""

    file = UploadedFile(required=True, metadata={"type": "string", "format": "binary"})
    format = ma.fields.String(
        validate=validate.OneOf(FILE_FORMATS),
        metadata={
            "description": "csv, parquet or npz; by default from the file name: .parquet or .pq "
            "is parquet, .npz is npz, any other csv"
        },
    )
    name = dataset_name_field()
    task = ma.fields.String(
        validate=validate.OneOf(TASKS),
        metadata={
            "description": "by default inferred from the targets: text or booleans, or whole "
            f"numbers with at most {MAX_INFERRED_CLASSES} distinct values, are classification; "
            "other numbers, or several target columns, regression (the answer's task_inferred "
            "says so)"
        },
    )
    target = ColumnList(
        metadata={
            "description": "csv and parquet (required): the target column(s), comma-separated; "
            "npz: the name of the targets array, by default y"
        },
    )
    features = ColumnList(
        metadata={
            "description": "csv and parquet: the feature columns, comma-separated, in the order "
            "the network takes them; by default every column but the targets and drop. Not "
            "with drop. npz: the name of the features array, by default X"
        }
    )
    weight = ma.fields.String(
        validate=validate.Length(min=1),
        metadata={
            "description": "csv and parquet: the column of each row's weight in the loss (finite"
            " numbers >= 0, not all 0), neither a feature nor a target"
        },
    )
    drop = ColumnList(
        metadata={
            "description": "csv and parquet: columns to leave out, comma-separated (an id, a "
            "text column); the features are the other columns but the targets. Not with features"
        }
    )
    header = ma.fields.Boolean(
        load_default=True,
        metadata={
            "description": "csv: whether the first line names the columns; without a header, "
            "columns are named by their 0-based number"
        },
    )

    @ma.validates_schema
    def check_features_or_drop(self, data: dict, **_kwargs) -> None:
        if "features" in data and "drop" in data:
            message = "give features (the columns to use) or drop (those to leave out), not both"
            raise ma.ValidationError({"features": [message], "drop": [message]})

    @ma.post_load
    def name_from_file(self, data: dict, **_kwargs) -> dict:
        """Without a name, the file's own name is the data set's, held to the same rules."""
        file_name = data["file"].filename
        if "name" not in data and file_name:
            try:
                self.fields["name"].deserialize(file_name)
            except ma.ValidationError as error:
                reasons = "; ".join(error.messages)
                raise ma.ValidationError(
                    {"name": [f"none was sent, and the file's name is not one: {reasons}"]}
                ) from error
            data["name"] = file_name
        return data


class DatasetSchema(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    task = ma.fields.Enum(Task, by_value=True)
    source = ma.fields.String(metadata={"description": "json, csv, parquet, npz or builtin"})
    rows = ma.fields.Integer(attribute="n_samples")
    features = ma.fields.Integer(attribute="n_features")
    outputs = ma.fields.Integer(
        attribute="n_outputs", metadata={"description": "classes or target columns"}
    )
    feature_names = ma.fields.List(ma.fields.String(), allow_none=True)
    target_names = ma.fields.List(ma.fields.String(), allow_none=True)
    classes = ma.fields.List(ma.fields.Raw(), allow_none=True)
    target_stats = ma.fields.Dict(
        allow_none=True, metadata={"description": "mean, std, min, max per target column"}
    )
    weighted = ma.fields.Boolean(
        metadata={"description": "whether the rows carry weights (sample_weights, weight)"}
    )
    created_at = ma.fields.DateTime()


@dataclass(frozen=True)
class NewDataset:
    """A data set just uploaded, and whether the service chose its task."""

    dataset: Dataset
    task_inferred: bool = False


class NewDatasetSchema(DatasetSchema):
    """The answer to an upload: the data set, and ``task_inferred``."""

    task_inferred = ma.fields.Boolean(
        metadata={"description": "true when the upload named no task and the targets chose it"}
    )

    def get_attribute(self, obj: NewDataset, attr: str, default):
        source = obj if attr == "task_inferred" else obj.dataset
        return super().get_attribute(source, attr, default)


class DatasetRowsQuerySchema(ma.Schema):
    limit = ma.fields.Integer(
        load_default=10,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "how many rows, from the first (at most 100)"},
    )


class DatasetRowsSchema(ma.Schema):
    """The first rows of a data set as it is stored: its features and targets side by side."""

    feature_names = ma.fields.List(
        ma.fields.String(), metadata={"description": "x0, x1, ... when the upload named none"}
    )
    target_names = ma.fields.List(
        ma.fields.String(), metadata={"description": "y0, y1, ... when the upload named none"}
    )
    features = ma.fields.List(ma.fields.List(ma.fields.Float()))
    targets = ma.fields.List(
        ma.fields.Raw(), metadata={"description": "a label or value per row, or a list of values"}
    )
    sample_weights = ma.fields.List(
        ma.fields.Float(), allow_none=True, metadata={"description": "a weight per row, or null"}
    )
