"""The dashboard at ``/``: its page and files come from the package, ask nothing of another host,
and follow a trusted reverse proxy's sub-path."""

import re
from urllib.parse import urljoin, urlsplit

import pytest

from service.api.dashboard import CONTENT_SECURITY_POLICY
from service.settings import Settings
from tests.factories import page_references

CONTENT_TYPES = {".css": "text/css", ".js": "javascript", ".html": "text/html"}


def base_of(html: str) -> str:
    return re.search(r'<base href="([^"]*)">', html).group(1)


def test_the_page_and_every_file_it_loads_are_ours(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    html = page.get_data(as_text=True)
    base = urljoin("http://localhost/", base_of(html))
    assets = [urlsplit(urljoin(base, ref)) for ref in page_references(html)]
    scripts = [asset.path for asset in assets if asset.path.endswith(".js")]
    assert scripts == [
        "/dashboard/vendor/uPlot.iife.min.js",
        "/dashboard/workbench.js",
        "/dashboard/dashboard.js",
    ]
    for asset in assets:
        if asset.scheme == "data":  # the empty favicon, so that the browser asks for none
            continue
        assert asset.netloc == "localhost", asset.geturl()
        if not asset.path.startswith("/dashboard/"):  # <base>, the links to pages and /docs
            continue
        response = client.get(asset.path)
        assert response.status_code == 200, asset.path
        suffix = asset.path[asset.path.rfind(".") :]
        assert CONTENT_TYPES[suffix] in response.content_type


def test_the_script_asks_only_relative_urls(client):
    script = client.get("/dashboard/dashboard.js").get_data(as_text=True)
    assert not re.search(r"https?://", script)
    assert "fetch(path" in script  # every API call goes through request(path), relative to <base>


@pytest.mark.parametrize("name", ["dashboard.js", "workbench.js"])
def test_no_script_parses_html(client, name):
    """Every string from the API is set as text: nothing in our scripts turns text into markup."""
    script = client.get(f"/dashboard/{name}").get_data(as_text=True)
    markup = r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|https?://"
    assert not re.search(markup, script)


def test_a_trusted_proxys_sub_path_becomes_the_pages_base(client_with):
    client = client_with(trusted_proxies=1)
    html = client.get("/", headers={"X-Forwarded-Prefix": "/backprop"}).get_data(as_text=True)
    assert base_of(html) == "/backprop/"
    created = client.post(
        "/v1/datasets", json={"builtin": "xor"}, headers={"X-Forwarded-Prefix": "/backprop"}
    )
    assert created.status_code == 201


def test_without_a_trusted_proxy_the_header_is_ignored(client):
    html = client.get("/", headers={"X-Forwarded-Prefix": "/evil"}).get_data(as_text=True)
    assert base_of(html) == "/"


def test_the_page_needs_no_key(client_with):
    client = client_with(auth="required")
    assert client.get("/").status_code == 200
    assert client.get("/dashboard/dashboard.css").status_code == 200
    assert client.get("/v1/jobs").status_code == 401


def test_the_dashboard_is_not_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not [path for path in paths if path == "/" or path.startswith("/dashboard")]


def test_a_negative_number_of_proxies_is_refused():
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        Settings.from_env({"TRUSTED_PROXIES": "-1"})
