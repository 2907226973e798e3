"""``AUTH=off`` means "this host only": what keeps out the web pages of this host's own browser.

Any page the developer opens can make their browser send requests to ``127.0.0.1``: form posts
(``application/x-www-form-urlencoded``, ``multipart/form-data`` and ``text/plain`` need no CORS
preflight) and, once the page's own DNS name is rebound to ``127.0.0.1``, any request whose
answer it can then read, its ``Host`` being the page's name. With ``AUTH=off`` no key stands in
the way, so with ``AUTH=off``:

- a request whose ``Host`` is not a loopback name or address is a 403 (DNS rebinding);
- a state-changing request whose ``Origin`` is another origin than the service's own, or that
  says ``Sec-Fetch-Site: cross-site``, is a 403 (the dashboard's fetches are same-origin);
- a body of a preflight-free type to an endpoint that does not take it is a 415 (browsers that
  send neither header).

Behind a trusted proxy (``TRUSTED_PROXIES``) the forwarded host and scheme are the ones checked.
With ``AUTH=required`` a page cannot give the browser a key to send, and none of this applies.
"""

from flask import Flask, request

from service.api.errors import fail
from service.settings import Settings, is_loopback

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The body types a page can send without a CORS preflight.
PAGE_BODY_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)
# The routes that take one of those types, and which.
PAGE_BODY_ROUTES = {("POST", "/v1/datasets"): frozenset({"multipart/form-data"})}


def host_name(host: str) -> str:
    """The name or address of a ``Host`` header, without its port (``[::1]:8000`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def own_origin() -> str:
    return f"{request.scheme}://{request.host}".lower()


def refuse_foreign_host() -> None:
    if not is_loopback(host_name(request.host)):
        fail(
            403,
            f"Host {request.host!r} is not a loopback name or address: with AUTH=off this "
            "service answers only requests addressed to this host (localhost, 127.0.0.1, ::1).",
        )


def refuse_other_origins() -> None:
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() != own_origin():
        fail(
            403,
            f"A request from a web page of another origin ({origin}) may not change anything "
            "with AUTH=off.",
        )
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        fail(403, "A cross-site request from a web page may not change anything with AUTH=off.")


def refuse_page_bodies() -> None:
    if request.mimetype not in PAGE_BODY_TYPES or request.url_rule is None:
        return  # no route: the router's 404 or 405 answers
    taken = PAGE_BODY_ROUTES.get((request.method, request.url_rule.rule), ())
    if request.mimetype not in taken:
        fail(415, f"This endpoint does not take {request.mimetype}: send application/json.")


def refuse_web_pages() -> None:
    """``before_request`` with ``AUTH=off``: 403 or 415 for what only a web page would send."""
    refuse_foreign_host()
    if request.method in STATE_CHANGING_METHODS:
        refuse_other_origins()
        refuse_page_bodies()


def install_web_page_guard(app: Flask, settings: Settings) -> None:
    """With ``AUTH=off``, refuse web pages' requests before anything else reads the request."""
    if settings.auth == "off":
        app.before_request(refuse_web_pages)
