"""``/v1/sweeps``: create (202), list, show with the leaderboard, cancel."""

from flask import url_for
from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters

from service.api.context import db, services
from service.api.errors import ErrorSchema, fail
from service.api.resources.paging import PagedBlueprint, page_of
from service.api.schemas.sweeps import SweepCreateSchema, SweepDetailSchema, SweepSchema
from service.db import sweeps
from service.db.models import Sweep
from service.sweeps.creation import create_sweep
from service.sweeps.views import sweep_detail

blp = PagedBlueprint(
    "sweeps", __name__, url_prefix="/v1/sweeps", description="Hyperparameter sweeps"
)


def get_sweep_or_404(sweep_id: int) -> Sweep:
    return db().get(Sweep, sweep_id) or fail(404, f"No sweep {sweep_id}.")


@blp.route("")
class Sweeps(MethodView):
    @blp.response(200, SweepSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters: PaginationParameters):
        """List sweeps, oldest first"""
        return page_of(sweeps.list_sweeps, pagination_parameters)

    @blp.arguments(SweepCreateSchema)
    @blp.response(202, SweepDetailSchema)
    @blp.alt_response(
        422,
        schema=ErrorSchema,
        description="A bad search, a trial whose spec cannot train (`trials[N].<field>`), more"
        " trials than MAX_SWEEP_TRIALS, first trials (`max_parallel`) more than QUOTA_JOBS on"
        " their own, or the tenant's storage at QUOTA_STORED_BYTES or the sweep's JSON over it",
    )
    @blp.alt_response(
        429,
        schema=ErrorSchema,
        description="The tenant's active jobs and the first trials would exceed QUOTA_JOBS",
    )
    def post(self, body: dict):
        """Start a sweep: every trial checked, stored, the first max_parallel queued"""
        session = db()
        sweep = create_sweep(session, services().queue, services().settings, body)
        location = url_for("sweeps.SweepById", sweep_id=sweep.id)
        return sweep_detail(session, sweep), 202, {"Location": location}


@blp.route("/<int:sweep_id>")
class SweepById(MethodView):
    @blp.response(200, SweepDetailSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, sweep_id: int):
        """Show a sweep: status, trials by status, the leaderboard"""
        return sweep_detail(db(), get_sweep_or_404(sweep_id))


@blp.route("/<int:sweep_id>/cancel")
class SweepCancel(MethodView):
    @blp.response(202, SweepDetailSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="The sweep has already ended")
    def post(self, sweep_id: int):
        """Cancel a sweep: its queued trials at once, its running ones at their next epoch"""
        sweep = get_sweep_or_404(sweep_id)
        session = db()
        if not sweeps.cancel_sweep(session, sweep_id):
            fail(409, f"Sweep {sweep_id} has already ended ({sweep.status}).")
        session.refresh(sweep)
        return sweep_detail(session, sweep)
