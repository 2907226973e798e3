"""``/v1/datasets``: upload as JSON, as a CSV, Parquet or .npz file, or from a built-in sample;
list, get, delete."""

from collections.abc import Callable
from functools import partial

from flask import Response, after_this_request, request
from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters

from service.api.context import db, services
from service.api.errors import INVALID_REQUEST, ErrorSchema, fail, load_or_fail
from service.api.resources.paging import PagedBlueprint, page_of
from service.api.schemas.datasets import (
    DATASET_BODY_FORMS,
    DatasetCreateSchema,
    DatasetRowsQuerySchema,
    DatasetRowsSchema,
    DatasetSchema,
    FileUploadSchema,
    NewDataset,
    NewDatasetSchema,
)
from service.datasets.ingest import (
    ColumnChoice,
    DataLimits,
    PackedDataset,
    dataset_from_json,
    dataset_from_sample,
)
from service.db import records
from service.db.blob_writes import checkpoint_wal
from service.db.models import Dataset
from service.quotas import check_room_for, check_upload_admission
from service.signatures import numbered
from service.vocabulary import Task

blp = PagedBlueprint("datasets", __name__, url_prefix="/v1/datasets", description="Training data")


def first_rows(dataset: Dataset, limit: int) -> dict:
    """The first ``limit`` rows of ``dataset``, with the names of its columns."""
    x, y, weights = records.get_dataset_arrays(db(), dataset.id)
    n_targets = 1 if y.ndim == 1 else y.shape[1]
    return {
        "feature_names": dataset.feature_names or numbered("x", dataset.n_features),
        "target_names": dataset.target_names or numbered("y", n_targets),
        "features": x[:limit].tolist(),
        "targets": y[:limit].tolist(),
        "sample_weights": None if weights is None else weights[:limit].tolist(),
    }


def data_limits() -> DataLimits:
    settings = services().settings
    return DataLimits(
        settings.max_dataset_rows, settings.max_dataset_cells, settings.max_label_chars
    )


# A data set read from a request's body, and whether the service chose its task.
ReadDataset = tuple[PackedDataset, bool]


def dataset_from_json_body() -> ReadDataset:
    payload = request.get_json(silent=True)
    if payload is None:
        fail(400, INVALID_REQUEST, {"json": ["Invalid JSON body."]})
    body = load_or_fail(DatasetCreateSchema(), payload)
    if "builtin" in body:
        return dataset_from_sample(body["builtin"], body.get("name")), False
    name = body.get("name") or "dataset"
    task = Task(body["task"])
    packed = dataset_from_json(
        name, task, body["features"], body["targets"], data_limits(), body.get("sample_weights")
    )
    return packed, False


def dataset_from_file_upload() -> ReadDataset:
    """The uploaded file parsed from its own stream: werkzeug spools a large one to disk.
    The readers (and pyarrow) are imported by the first upload, not at start-up: an API
    process that never reads a file never holds their modules and objects."""
    from service.datasets.uploads import Upload, dataset_from_file, format_of

    form = load_or_fail(FileUploadSchema(), {**request.form.to_dict(), **request.files.to_dict()})
    file = form["file"]
    upload = Upload(
        name=form.get("name", "dataset"),
        task=Task(form["task"]) if "task" in form else None,
        stream=file.stream,
        columns=ColumnChoice(
            form.get("target", ()), form.get("features"), form.get("drop", ()), form.get("weight")
        ),
        header=form["header"],
    )
    file_format = form.get("format") or format_of(file.filename)
    return dataset_from_file(file_format, upload, data_limits()), upload.task is None


def refuse_when_storage_is_full() -> None:
    """The cheap check before parsing; its transaction ends before the parse, so that no
    connection is held through it (the exact check is made with the insert)."""
    session = db()
    check_upload_admission(session, services().settings)
    session.rollback()


def store_dataset(packed: PackedDataset) -> Dataset:
    """Insert the data set and its arrays, unless they would take the tenant over its storage
    quota."""
    session = db()
    check_room_for(session, services().settings, packed.row.stored_bytes)
    dataset = records.add_dataset(session, packed.row, packed.npz)
    after_this_request(checkpoint_when_sent)
    return dataset


def checkpoint_when_sent(response: Response) -> Response:
    """SQLite's checkpoint of the arrays just stored, which ``records.add_dataset`` leaves: run
    once the response is sent, not before it (the data set is durable when the commit
    returns)."""
    response.call_on_close(partial(checkpoint_wal, db().get_bind()))
    return response


BODY_READERS: dict[str, Callable[[], ReadDataset]] = {
    "application/json": dataset_from_json_body,
    "multipart/form-data": dataset_from_file_upload,
}

UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"oneOf": DATASET_BODY_FORMS}},
        "multipart/form-data": {"schema": FileUploadSchema},
    },
}


@blp.route("")
class Datasets(MethodView):
    @blp.response(200, DatasetSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters: PaginationParameters):
        """List data sets, oldest first"""
        return page_of(records.list_datasets, pagination_parameters)

    @blp.doc(requestBody=UPLOAD_BODY)
    @blp.response(201, NewDatasetSchema)
    @blp.alt_response(415, schema=ErrorSchema, description="Neither JSON nor multipart")
    @blp.alt_response(
        422,
        schema=ErrorSchema,
        description="Data the service cannot train on, or more than QUOTA_STORED_BYTES allows",
    )
    def post(self):
        """Upload a data set: JSON arrays, a CSV, Parquet or .npz file (multipart) or a built-in
        sample"""
        reader = BODY_READERS.get(request.mimetype)
        if reader is None:
            fail(415, "Send application/json or multipart/form-data.")
        refuse_when_storage_is_full()
        packed, task_inferred = reader()
        with packed:
            return NewDataset(store_dataset(packed), task_inferred)


@blp.route("/<int:dataset_id>")
class DatasetById(MethodView):
    @blp.response(200, DatasetSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, dataset_id: int):
        """Show a data set"""
        return records.get_dataset(db(), dataset_id) or fail(404, f"No data set {dataset_id}.")

    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="A queued or running job uses it")
    def delete(self, dataset_id: int):
        """Delete a data set (its models stay)"""
        session = db()
        dataset = records.get_dataset(session, dataset_id) or fail(
            404, f"No data set {dataset_id}."
        )
        if records.dataset_in_use(session, dataset_id):
            fail(409, f"Data set {dataset_id} is used by a queued or running job.")
        records.delete_row(session, dataset)


@blp.route("/<int:dataset_id>/rows")
class DatasetRows(MethodView):
    @blp.arguments(DatasetRowsQuerySchema, location="query")
    @blp.response(200, DatasetRowsSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, query: dict, dataset_id: int):
        """The first rows of a data set, as stored (a preview)"""
        dataset = records.get_dataset(db(), dataset_id) or fail(404, f"No data set {dataset_id}.")
        return first_rows(dataset, query["limit"])
