"""Around every request: its id, its one log line and its figures for ``/metrics``.

The id is the client's ``X-Request-ID`` when it is 1 to 64 visible ASCII characters (what a job
row keeps), else a new uuid4; every response echoes it, every log line written while the
request runs carries it (service/logs.py), and a job submitted by the request keeps it for the
worker's log lines. A prediction takes about 0.3 ms: these hooks cost a few microseconds and a
log line.
"""

import logging
import re
import time

from flask import Flask, Request, Response, current_app, g, request

from service.api.auth import Principal
from service.ids import uuid4_hex
from service.logs import REQUEST_ID

REQUEST_ID_HEADER = "X-Request-ID"
VALID_REQUEST_ID = re.compile(r"[!-~]{1,64}")
# The route of a request no URL rule matched (a 404 from the router).
UNMATCHED = "unmatched"

request_log = logging.getLogger("service.requests")


def request_id_from(header: str | None) -> str:
    """The client's request id when it is acceptable, else a new one."""
    if header is not None and VALID_REQUEST_ID.fullmatch(header):
        return header
    return uuid4_hex()


def start_request() -> None:
    """``before_request``, registered before every other: the clock and the request id."""
    state = g._get_current_object()  # one lookup of the context's proxies per hook, not per use
    state.request_started = time.perf_counter()
    state.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    REQUEST_ID.set(state.request_id)


def finish_request(response: Response) -> Response:
    """``after_request``: echo the id, count the request, write its log line."""
    state, req = g._get_current_object(), request._get_current_object()
    seconds = time.perf_counter() - state.request_started
    route = req.url_rule.rule if req.url_rule is not None else UNMATCHED
    status = response.status_code
    response.headers[REQUEST_ID_HEADER] = state.request_id
    metrics = current_app.extensions.get("http_metrics")
    if metrics is not None:
        metrics.observe(route, req.method, status, seconds, response.headers.get("X-Model-Id"))
    if request_log.isEnabledFor(logging.INFO):
        log_request(req, state.get("principal"), route, status, seconds)
    return response


def log_request(
    req: Request, principal: Principal | None, route: str, status: int, seconds: float
) -> None:
    request_log.info(
        "%s %s %s",
        req.method,
        req.path,
        status,
        extra={
            "route": route,
            "method": req.method,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "tenant": None if principal is None else principal.tenant,
            "key_id": None if principal is None else principal.key_id,
            "remote_addr": req.remote_addr,
        },
    )


def forget_request_id(_error: BaseException | None = None) -> None:
    """``teardown_request``: lines this thread writes after the request carry no stale id."""
    REQUEST_ID.set(None)


def track_requests(app: Flask) -> None:
    """Install the hooks; call before any other ``before_request`` is registered, so that a
    request another hook refuses (a 401) still gets its id, line and count."""
    app.before_request(start_request)
    app.after_request(finish_request)
    app.teardown_request(forget_request_id)
