"""``/health/live`` (the process answers) and ``/health/ready`` (every process of the server has
warmed its models, it is not draining, and the database and broker are reachable)."""

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import text

from service.api.context import db, services
from service.api.errors import ErrorSchema, fail
from service.api.readiness import readiness_problem
from service.api.schemas.health import HealthSchema

blp = Blueprint("health", __name__, url_prefix="/health", description="Probes")


def check_database() -> str:
    db().execute(text("SELECT 1"))
    return "ok"


def check_broker() -> str:
    waiting = services().queue.queued_messages()
    return f"ok ({waiting} queued)"


READINESS_CHECKS = {"database": check_database, "broker": check_broker}


def refuse_while_not_serving() -> None:
    """503 while the server warms up its models or drains (service/api/readiness.py)."""
    problem = readiness_problem(current_app)
    if problem is not None:
        fail(503, f"Not ready: {problem}.", {"serving": [problem]})


@blp.route("/live")
class Live(MethodView):
    @blp.response(200, HealthSchema)
    def get(self):
        """The process is up"""
        return {"status": "ok", "checks": {}}


@blp.route("/ready")
class Ready(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(
        503,
        schema=ErrorSchema,
        description="Warming up, draining, or a dependency is unreachable",
    )
    def get(self):
        """Every process has warmed its models, none is draining, the database and the broker
        answer"""
        refuse_while_not_serving()
        checks, problems = {}, {}
        for name, check in READINESS_CHECKS.items():
            try:
                checks[name] = check()
            except Exception as error:
                problems[name] = [f"unreachable: {error}"]
        if problems:
            fail(503, f"Not ready: {', '.join(problems)} unreachable.", problems)
        return {"status": "ok", "checks": checks}
