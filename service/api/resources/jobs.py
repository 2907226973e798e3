"""``/v1/jobs``: submit (202), dry-run, list, show, cancel, epoch history and live events."""

from functools import partial

from flask import Response, current_app, g, url_for
from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters

from model_core import MAX_INT32
from service.api.context import db, services
from service.api.errors import ErrorSchema, fail
from service.api.events import JobEventStream, event_stream_response
from service.api.resources.paging import PagedBlueprint, page_of
from service.api.schemas.jobs import (
    JOB_EVENT,
    EpochQuerySchema,
    EpochSchema,
    EventHeadersSchema,
    JobCreateSchema,
    JobSchema,
    LossChartQuerySchema,
    LossComparisonQuerySchema,
    SubmitHeadersSchema,
    ValidationReportSchema,
)
from service.db import records
from service.db.models import TrainingJob
from service.db.tenancy import session_for
from service.jobs.cancellation import cancel_job
from service.jobs.idempotency import Submission, idempotency_key
from service.jobs.plots import MEDIA_TYPES, ImageFormat, LossCurve, loss_chart
from service.jobs.specs import check_job
from service.jobs.submission import submit_job

blp = PagedBlueprint("jobs", __name__, url_prefix="/v1/jobs", description="Training jobs")

REPLAYED_HEADER = "Idempotent-Replayed"
REPLAYED_DOC = {
    "description": "`true` when an earlier request with this Idempotency-Key created the job",
    "schema": {"type": "string", "enum": ["true"]},
}
RETRY_AFTER_HEADER = "Retry-After"
RETRY_AFTER_DOC = {
    "description": "Seconds to wait before submitting again",
    "schema": {"type": "integer", "minimum": 1},
}
NEXT_LINK_DOC = {
    "description": 'Present while more epochs are stored: `<URL of the next page>; rel="next"`',
    "schema": {"type": "string"},
}
EVENT_STREAM_DOC = {
    "content": {"text/event-stream": {"schema": JOB_EVENT}},
    "description": "Server-Sent Events until the job is finished: an `epoch` event per epoch"
    " record (`id:` its epoch number, `data:` an Epoch as JSON) and a `status` event per change"
    " of status (`data:` id, status, attempt, epoch, epochs, cancel_requested, error and"
    " model_id as JSON), the final status last; `: keep-alive` comment lines in between",
}

NO_STORE_DOC = {
    "description": "`no-store`: a running job's curves grow",
    "schema": {"type": "string", "enum": ["no-store"]},
}


def get_job_or_404(job_id: int):
    return records.get_job(db(), job_id) or fail(404, no_job(job_id))


def no_job(job_id: int) -> str:
    return f"No job {job_id}."


def require_job(job_id: int) -> None:
    """404 unless job ``job_id`` exists; for views that need its id only, not its row."""
    if not records.row_exists(db(), TrainingJob, job_id):
        fail(404, no_job(job_id))


def next_epochs_link(job_id: int, after: int, limit: int) -> str:
    """An RFC 8288 link to the page of epochs after epoch ``after``."""
    url = url_for("jobs.JobEpochs", job_id=job_id, after=after, limit=limit)
    return f'<{url}>; rel="next"'


def submission_headers(submission: Submission) -> dict[str, str]:
    headers = {"Location": url_for("jobs.JobById", job_id=submission.job.id)}
    if submission.replayed:
        headers[REPLAYED_HEADER] = "true"
    return headers


def submit(headers: dict, body: dict) -> Submission:
    settings = services().settings
    key = idempotency_key(headers.get("idempotency_key"), body, settings.idempotency_ttl_seconds)
    return submit_job(db(), services().queue, settings, key, body)


@blp.route("")
class Jobs(MethodView):
    @blp.response(200, JobSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters: PaginationParameters):
        """List jobs, oldest first"""
        return page_of(records.list_jobs, pagination_parameters)

    @blp.arguments(SubmitHeadersSchema, location="headers")
    @blp.arguments(JobCreateSchema)
    @blp.response(202, JobSchema, headers={REPLAYED_HEADER: REPLAYED_DOC})
    @blp.alt_response(
        422,
        schema=ErrorSchema,
        description="A spec that cannot train on the data, an Idempotency-Key used before"
        " with another body, or the tenant's storage at QUOTA_STORED_BYTES or the job's JSON"
        " (initial_weights) over it",
    )
    @blp.alt_response(
        429,
        schema=ErrorSchema,
        description="QUOTA_JOBS jobs of the tenant queued or running, or RATE_LIMIT exceeded",
        headers={RETRY_AFTER_HEADER: RETRY_AFTER_DOC},
    )
    def post(self, headers: dict, body: dict):
        """Submit a training job: checked, stored as queued, then sent to a worker"""
        submission = submit(headers, body)
        return submission.job, 202, submission_headers(submission)


@blp.route("/validate")
class JobValidation(MethodView):
    @blp.arguments(JobCreateSchema)
    @blp.response(200, ValidationReportSchema)
    def post(self, body: dict):
        """Check a job without queuing it: errors, warnings and the specs with their defaults"""
        return check_job(db(), services().settings, **body)


@blp.route("/<int:job_id>")
class JobById(MethodView):
    @blp.response(200, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, job_id: int):
        """Show a job: status, progress, latest losses, error, model id"""
        return get_job_or_404(job_id)


@blp.route("/<int:job_id>/cancel")
class JobCancel(MethodView):
    @blp.response(202, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="The job is already finished")
    def post(self, job_id: int):
        """Cancel a job: a queued one at once, a running one at its next epoch boundary"""
        return cancel_job(db(), get_job_or_404(job_id))


@blp.route("/<int:job_id>/epochs")
class JobEpochs(MethodView):
    @blp.arguments(EpochQuerySchema, location="query")
    @blp.response(200, EpochSchema(many=True), headers={"Link": NEXT_LINK_DOC})
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, query: dict, job_id: int):
        """The job's epoch records after epoch ``after``, in order (poll while it runs); a
        ``Link: <...>; rel="next"`` header while more are stored"""
        require_job(job_id)
        limit = query["limit"]
        rows = records.list_epochs(db(), job_id, query["after"], limit + 1)
        if len(rows) <= limit:
            return rows
        page = rows[:limit]
        return page, 200, {"Link": next_epochs_link(job_id, page[-1].epoch, limit)}


@blp.route("/<int:job_id>/events")
class JobEvents(MethodView):
    @blp.arguments(EventHeadersSchema, location="headers")
    @blp.doc(responses={200: EVENT_STREAM_DOC})
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(429, schema=ErrorSchema, description="The tenant's streams are all open")
    @blp.alt_response(503, schema=ErrorSchema, description="Too many open streams")
    def get(self, headers: dict, job_id: int):
        """Live progress as Server-Sent Events until the job is finished (see Last-Event-ID)"""
        require_job(job_id)
        tenant_sessions = partial(session_for, services().sessions, g.principal.tenant)
        stream = JobEventStream(tenant_sessions, job_id, headers["last_event_id"])
        slots = current_app.extensions["event_streams"]
        return event_stream_response(stream, slots, g.principal.tenant)


def loss_image_doc(image_format: ImageFormat) -> dict:
    return {
        "content": {MEDIA_TYPES[image_format]: {"schema": {"type": "string", "format": "binary"}}},
        "description": "Train (solid) and validation (dashed) loss by epoch; a chart whose title"
        " says `no epochs yet` before the first epoch",
        "headers": {"Cache-Control": NO_STORE_DOC},
    }


def loss_curve(job_id: int) -> LossCurve:
    """Job ``job_id``'s losses; 404 naming it unless it is one of the caller's jobs."""
    if job_id > MAX_INT32 or not records.row_exists(db(), TrainingJob, job_id):
        fail(404, no_job(job_id))
    columns = list(zip(*records.loss_history(db(), job_id), strict=True)) or [(), (), ()]
    return LossCurve(f"job {job_id}", *columns)


def loss_image(curves: list[LossCurve], title: str, image_format: ImageFormat, log: bool):
    image = loss_chart(curves, title, image_format, log)
    return Response(
        image, mimetype=MEDIA_TYPES[image_format], headers={"Cache-Control": "no-store"}
    )


def register_loss_charts(image_format: ImageFormat) -> None:
    """``loss.svg`` or ``loss.png``: of one job, and of several jobs on one chart."""
    name = image_format.upper()
    images = {200: loss_image_doc(image_format)}

    @blp.route(f"/<int:job_id>/loss.{image_format}", endpoint=f"JobLoss{name}")
    class JobLossChart(MethodView):
        @blp.arguments(LossChartQuerySchema, location="query")
        @blp.doc(summary=f"The job's loss curves as {name}", responses=images)
        @blp.alt_response(404, schema=ErrorSchema)
        def get(self, query: dict, job_id: int):
            return loss_image(
                [loss_curve(job_id)], f"Job {job_id} loss", image_format, query["log"]
            )

    @blp.route(f"/loss.{image_format}", endpoint=f"JobsLoss{name}")
    class JobsLossChart(MethodView):
        @blp.arguments(LossComparisonQuerySchema, location="query")
        @blp.doc(summary=f"Several jobs' loss curves on one {name} chart", responses=images)
        @blp.alt_response(404, schema=ErrorSchema, description="One of the ids names no job")
        def get(self, query: dict):
            curves = [loss_curve(job_id) for job_id in query["ids"]]
            title = "Loss of jobs " + ", ".join(str(job_id) for job_id in query["ids"])
            return loss_image(curves, title, image_format, query["log"])


for image_format in MEDIA_TYPES:
    register_loss_charts(image_format)
