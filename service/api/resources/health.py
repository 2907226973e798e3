"""``/health/live`` (the process answers) and ``/health/ready`` (database and broker reachable)."""

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import text

from service.api.context import db, services
from service.api.errors import ErrorSchema, fail
from service.api.schemas.health import HealthSchema

blp = Blueprint("health", __name__, url_prefix="/health", description="Probes")


def check_database() -> str:
    db().execute(text("SELECT 1"))
    return "ok"


def check_broker() -> str:
    waiting = services().queue.queued_messages()
    return f"ok ({waiting} queued)"


READINESS_CHECKS = {"database": check_database, "broker": check_broker}


@blp.route("/live")
class Live(MethodView):
    @blp.response(200, HealthSchema)
    def get(self):
        """The process is up"""
        return {"status": "ok", "checks": {}}


@blp.route("/ready")
class Ready(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=ErrorSchema, description="A dependency is unreachable")
    def get(self):
        """The database and the broker answer"""
        checks, problems = {}, {}
        for name, check in READINESS_CHECKS.items():
            try:
                checks[name] = check()
            except Exception as error:
                problems[name] = [f"unreachable: {error}"]
        if problems:
            fail(503, f"Not ready: {', '.join(problems)} unreachable.", problems)
        return {"status": "ok", "checks": checks}
