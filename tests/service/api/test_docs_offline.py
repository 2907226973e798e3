"""/docs works on a host with no internet: the page and every file it loads are served by us,
from the swagger-ui-bundle package; none of them is in the OpenAPI document, behind a key or
counted by the rate limits."""

import base64
import hashlib
import re
import secrets
from urllib.parse import urljoin, urlsplit

import pytest

from service.commands.supervisor import local_url
from service.settings import Settings
from tests.factories import page_references

DOCS_URL = "http://localhost/docs"
CONTENT_TYPES = {".css": "text/css", ".js": "javascript"}


def docs_assets(client) -> list[str]:
    """The path of every file the /docs page loads, as the browser resolves it."""
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    references = page_references(page.get_data(as_text=True))
    assert references
    return [urlsplit(urljoin(DOCS_URL, reference)) for reference in references]


def test_every_file_of_the_docs_page_is_served_by_us_with_its_content_type(client):
    for asset in docs_assets(client):
        assert asset.netloc == "localhost", asset.geturl()
        response = client.get(asset.path)
        assert response.status_code == 200, asset.path
        suffix = asset.path[asset.path.rfind(".") :]
        assert CONTENT_TYPES[suffix] in response.content_type, (asset.path, response.content_type)
        assert len(response.data) > 1000


def test_the_page_asks_for_our_document_and_no_validator_badge(client):
    html = client.get("/docs").get_data(as_text=True)
    assert 'url: "/openapi.json"' in html
    assert '"validatorUrl": null' in html
    assert "cdn.jsdelivr.net" not in html


@pytest.mark.parametrize(
    "path",
    ["/docs/static/index.html", "/docs/static/swagger-initializer.js", "/docs/static/../app.py"],
)
def test_only_the_files_the_page_loads_are_served(client, path):
    # The bundle's demo page would open the Petstore from the internet.
    assert client.get(path).status_code == 404


def test_the_files_are_not_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not [path for path in paths if path.startswith("/docs")]


def test_the_docs_need_no_key_and_are_not_rate_limited(client_with):
    client = client_with(auth="required", rate_limit="1/minute")
    # An address of its own: the rate limits' counts may be shared through Redis.
    client.environ_base["REMOTE_ADDR"] = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.1"
    for _ in range(3):
        assets = docs_assets(client)
        assert all(client.get(asset.path).status_code == 200 for asset in assets)
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/v1/datasets").status_code == 401


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8123"),
        ("0.0.0.0", "http://127.0.0.1:8123"),
        ("::", "http://[::1]:8123"),
        ("localhost", "http://localhost:8123"),
    ],
)
def test_run_announces_the_address_this_host_reaches_it_at(host, url):
    assert local_url(Settings(host=host, port=8123)) == url


def test_the_docs_page_has_a_policy_that_allows_only_its_own_script(client):
    response = client.get("/docs")
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    scripts = re.findall(r"<script>(.*?)</script>", response.get_data(as_text=True), re.DOTALL)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
