"""Training jobs: the submission and its headers, the job as shown, its epoch history and event
stream, and the dry-run report."""

import marshmallow as ma
from marshmallow import validate

from model_core import MAX_INT32
from service.api.schemas.models import model_name_field
from service.api.schemas.specs import NETWORK_SPEC, TRAINING_SPEC
from service.jobs.idempotency import IDEMPOTENCY_HEADER
from service.vocabulary import JobStatus

MAX_EPOCHS_PER_PAGE = 10_000
MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_COMPARED_JOBS = 20
JOB_ID = "[1-9][0-9]{0,9}"
JOB_IDS_PATTERN = f"^{JOB_ID}(,{JOB_ID}){{0,{MAX_COMPARED_JOBS - 1}}}$"


class JobCreateSchema(ma.Schema):
    """model_core's network and training specs, as documented in docs/model_core.md."""

    dataset_id = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_INT32)
    )
    network = ma.fields.Dict(required=True, metadata=NETWORK_SPEC)
    training = ma.fields.Dict(load_default=dict, metadata=TRAINING_SPEC)
    model_name = model_name_field(
        "the job's model becomes the next version of this name (1, 2, ...)"
    )


class SubmitHeadersSchema(ma.Schema):
    idempotency_key = ma.fields.String(
        data_key=IDEMPOTENCY_HEADER,
        validate=[
            validate.Length(max=MAX_IDEMPOTENCY_KEY_LENGTH),
            validate.Regexp(r"^[\x20-\x7e]+$", error="must be printable ASCII characters"),
        ],
        metadata={
            "description": "A key of your choice: the same key and body again within"
            " IDEMPOTENCY_TTL_SECONDS (24 h) return the first job instead of creating another"
        },
    )


class JobSchema(ma.Schema):
    id = ma.fields.Integer()
    dataset_id = ma.fields.Integer(allow_none=True)
    status = ma.fields.Enum(JobStatus, by_value=True)
    attempt = ma.fields.Integer()
    epoch = ma.fields.Integer()
    epochs = ma.fields.Integer()
    train_loss = ma.fields.Float(allow_none=True)
    val_loss = ma.fields.Float(allow_none=True)
    train_accuracy = ma.fields.Float(allow_none=True)
    val_accuracy = ma.fields.Float(allow_none=True)
    error = ma.fields.String(allow_none=True)
    cancel_requested = ma.fields.Boolean(
        metadata={"description": "a cancel was asked for; a running job stops at its next epoch"}
    )
    model_id = ma.fields.Integer(allow_none=True)
    model_name = ma.fields.String(allow_none=True)
    network = ma.fields.Dict()
    training = ma.fields.Dict()
    warnings = ma.fields.List(ma.fields.String())
    created_at = ma.fields.DateTime()
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)


class EpochQuerySchema(ma.Schema):
    after = ma.fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_INT32),
        metadata={"description": "return epochs after this one"},
    )
    limit = ma.fields.Integer(
        load_default=1000, validate=validate.Range(min=1, max=MAX_EPOCHS_PER_PAGE)
    )


class EpochSchema(ma.Schema):
    epoch = ma.fields.Integer()
    train_loss = ma.fields.Float()
    val_loss = ma.fields.Float(allow_none=True)
    train_accuracy = ma.fields.Float(allow_none=True)
    val_accuracy = ma.fields.Float(allow_none=True)
    learning_rate = ma.fields.Float(
        allow_none=True,
        metadata={
            "description": "the rate this epoch trained at (its schedule's); null in"
            " records stored before it was kept"
        },
    )
    seconds = ma.fields.Float()


class LossChartQuerySchema(ma.Schema):
    log = ma.fields.Boolean(load_default=False, metadata={"description": "a log-scale y axis"})


class LossComparisonQuerySchema(LossChartQuerySchema):
    ids = ma.fields.String(
        required=True,
        validate=validate.Regexp(
            JOB_IDS_PATTERN, error=f"comma-separated job ids, at most {MAX_COMPARED_JOBS}"
        ),
        metadata={"description": f"the jobs to compare, at most {MAX_COMPARED_JOBS}: `3,4,5`"},
    )

    @ma.post_load
    def job_ids(self, data: dict, **_kwargs) -> dict:
        """``ids`` as integers, each once, in the order given."""
        return {
            **data,
            "ids": list(dict.fromkeys(int(job_id) for job_id in data["ids"].split(","))),
        }


class EventHeadersSchema(ma.Schema):
    last_event_id = ma.fields.Integer(
        data_key="Last-Event-ID",
        load_default=0,
        validate=validate.Range(min=0, max=MAX_INT32),
        metadata={"description": "the last epoch received: the stream resumes after it"},
    )


def sse_event_schema(event: str, data: str, **more_fields: dict) -> dict:
    """One event of a text/event-stream, as its fields: ``event``, ``data`` (text described by
    ``data``) and ``more_fields``."""
    properties = {
        "event": {"type": "string", "enum": [event]},
        "data": {"type": "string", "description": data},
        **more_fields,
    }
    return {"type": "object", "required": ["event", "data", *more_fields], "properties": properties}


JOB_EVENT = {
    "oneOf": [
        sse_event_schema(
            "epoch",
            "an Epoch, as JSON",
            id={"type": "string", "pattern": "^[0-9]+$", "description": "its epoch"},
        ),
        sse_event_schema(
            "status",
            "JSON: id, status, attempt, epoch, epochs, cancel_requested, error, model_id",
        ),
    ],
    "description": "one event of the stream",
}


class ValidationReportSchema(ma.Schema):
    valid = ma.fields.Boolean()
    errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))
    warnings = ma.fields.List(ma.fields.String())
    network = ma.fields.Dict(allow_none=True, metadata={"description": "with defaults filled in"})
    training = ma.fields.Dict(allow_none=True, metadata={"description": "with defaults filled in"})
