"""The dashboard at ``/``: one page, its scripts (the workbench's forms in workbench.js, the rest in
dashboard.js), stylesheet and the vendored uPlot (1.6.32, MIT,
service/api/web/vendor/), all served from the package, so that it works on a host with no internet.

The page is a client of the public API like any other: it reads and writes through ``/v1`` with the
key a person enters (kept in the tab's session storage), and opens event streams and images with the
short-lived access tokens of ``POST /v1/tokens``. Its routes are not in the OpenAPI document, and
neither auth nor the rate limits apply to them (they guard /v1 and /v2).

Every URL in the page is relative to a ``<base>`` that carries the request's script root, so
that behind a reverse proxy at a sub-path (``X-Forwarded-Prefix``, trusted when
``TRUSTED_PROXIES`` says a proxy is there) the page asks that sub-path for everything.
"""

from flask import Blueprint, Flask, Response, render_template, request

# Nothing but this server: no script, style, font, image or connection from anywhere else.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)

blp = Blueprint(
    "dashboard",
    __name__,
    static_folder="web",
    static_url_path="/dashboard",
    template_folder="web",
)


@blp.get("/")
def dashboard_page() -> Response:
    response = Response(render_template("dashboard.html", base=f"{request.script_root}/"))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-cache"
    return response


def install_dashboard(app: Flask) -> None:
    app.register_blueprint(blp)
