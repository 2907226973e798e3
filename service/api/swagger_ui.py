"""Swagger UI's files for ``/docs``, served from the ``swagger-ui-bundle`` package (Swagger UI
4.15.5, Apache-2.0): the page works with no internet. The route is not in the OpenAPI document,
and neither auth nor the rate limits apply to it (they guard /v1 and /v2 only)."""

import base64
import hashlib
import re

from flask import Flask, Response, abort, request, send_from_directory
from swagger_ui_bundle import swagger_ui_path

# Relative to the page at /docs, so that it also resolves under a reverse proxy's sub-path.
SWAGGER_UI_URL = "docs/static/"
# What flask-smorest's swagger_ui.html loads, and their source maps; not the bundle's demo
# index.html, which opens the Petstore from the internet.
PAGE_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")
SERVED_FILES = frozenset(PAGE_FILES + tuple(f"{name}.map" for name in PAGE_FILES))


DOCS_PATH = "/docs"
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
# Swagger UI styles its elements inline and draws its icons as data: images; nothing from
# anywhere else, and no page may frame it (clickjacking a person's key into a "Try it out").
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' {scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)


def docs_policy(page: bytes) -> str:
    """The Content-Security-Policy of the /docs page: its own files, and its one inline script
    (flask-smorest's, which starts Swagger UI) by its SHA-256."""
    hashes = (
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(page)
    )
    return DOCS_POLICY.format(scripts=" ".join(hashes))


def add_docs_policy(response: Response) -> Response:
    """``after_request``: the policy on the /docs page (and its frame-ancestors)."""
    if request.path == DOCS_PATH and response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = docs_policy(response.get_data())
    return response


def swagger_ui_file(filename: str) -> Response:
    if filename not in SERVED_FILES:
        abort(404)
    return send_from_directory(str(swagger_ui_path), filename)


def install_swagger_ui_files(app: Flask) -> None:
    """Serve Swagger UI's files at ``/docs/static/<filename>``, and the page with its policy."""
    app.add_url_rule(
        f"/{SWAGGER_UI_URL}<filename>", "swagger_ui_file", swagger_ui_file, methods=["GET"]
    )
    app.after_request(add_docs_policy)
