"""Swagger UI's files for ``/docs``, served from the ``swagger-ui-bundle`` package (Swagger UI
4.15.5, Apache-2.0): the page works with no internet. The route is not in the OpenAPI document,
and neither auth nor the rate limits apply to it (they guard /v1 and /v2 only)."""

from flask import Flask, Response, abort, send_from_directory
from swagger_ui_bundle import swagger_ui_path

# Relative to the page at /docs, so that it also resolves under a reverse proxy's sub-path.
SWAGGER_UI_URL = "docs/static/"
# What flask-smorest's swagger_ui.html loads, and their source maps; not the bundle's demo
# index.html, which opens the Petstore from the internet.
PAGE_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")
SERVED_FILES = frozenset(PAGE_FILES + tuple(f"{name}.map" for name in PAGE_FILES))


def swagger_ui_file(filename: str) -> Response:
    if filename not in SERVED_FILES:
        abort(404)
    return send_from_directory(str(swagger_ui_path), filename)


def install_swagger_ui_files(app: Flask) -> None:
    """Serve Swagger UI's files at ``/docs/static/<filename>``."""
    app.add_url_rule(
        f"/{SWAGGER_UI_URL}<filename>", "swagger_ui_file", swagger_ui_file, methods=["GET"]
    )
