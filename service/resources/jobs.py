"""``/v1/jobs``: submit (202), dry-run, list, show, and the epoch history."""

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationParameters

from service.context import db, services
from service.db import queries
from service.errors import ErrorSchema, fail
from service.jobs import QueueUnavailable, check_job, submit_job
from service.schemas.jobs import (
    EpochQuerySchema,
    EpochSchema,
    JobCreateSchema,
    JobSchema,
    ValidationReportSchema,
)

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Training jobs")


def get_job_or_404(job_id: int):
    return queries.get_job(db(), job_id) or fail(404, f"No job {job_id}.")


@blp.route("")
class Jobs(MethodView):
    @blp.response(200, JobSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters: PaginationParameters):
        """List jobs, oldest first"""
        items, pagination_parameters.item_count = queries.list_jobs(
            db(), pagination_parameters.first_item, pagination_parameters.page_size
        )
        return items

    @blp.arguments(JobCreateSchema)
    @blp.response(202, JobSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="A spec that cannot train on the data")
    @blp.alt_response(503, schema=ErrorSchema, description="The broker refused the job")
    def post(self, body: dict):
        """Submit a training job; it is checked against the data set before it is queued"""
        try:
            job = submit_job(db(), services().queue, **body)
        except QueueUnavailable as error:
            fail(503, f"The job could not be queued; try again later. ({error})")
        return job, 202, {"Location": url_for("jobs.JobById", job_id=job.id)}


@blp.route("/validate")
class JobValidation(MethodView):
    @blp.arguments(JobCreateSchema)
    @blp.response(200, ValidationReportSchema)
    def post(self, body: dict):
        """Check a job without queuing it: errors, warnings and the specs with their defaults"""
        return check_job(db(), **body)


@blp.route("/<int:job_id>")
class JobById(MethodView):
    @blp.response(200, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, job_id: int):
        """Show a job: status, progress, latest losses, error, model id"""
        return get_job_or_404(job_id)


@blp.route("/<int:job_id>/epochs")
class JobEpochs(MethodView):
    @blp.arguments(EpochQuerySchema, location="query")
    @blp.response(200, EpochSchema(many=True))
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, query: dict, job_id: int):
        """The job's epoch records after epoch ``after``, in order (poll while it runs)"""
        get_job_or_404(job_id)
        return queries.list_epochs(db(), job_id, query["after"], query["limit"])
