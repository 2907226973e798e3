"""Through `backprop api`'s server, a chunked body over MAX_REQUEST_BYTES is a 413 with the
envelope, as a body with a Content-Length is; a chunked body within the limit is read whole."""

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
import requests

from tests.factories import free_port, wait_until
from tests.integration.conftest import BACKPROP, START_DEADLINE_SECONDS, in_own_worker

pytestmark = in_own_worker("body-limit")

MAX_REQUEST_BYTES = 200_000


@pytest.fixture(scope="module")
def api_url(tmp_path_factory) -> Iterator[str]:
    """`backprop api` alone on a SQLite file, with bodies limited to MAX_REQUEST_BYTES."""
    home = tmp_path_factory.mktemp("body-limit")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{home / 'backprop.sqlite'}",
        "BROKER_URL": f"sqla+sqlite:///{home / 'broker.sqlite'}",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "DRAIN_SECONDS": "0",  # no load balancer in front: a SIGTERM stops it at once
        "MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
    }
    subprocess.run([BACKPROP, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=home)
    with (home / "api.log").open("w") as log:
        api = subprocess.Popen([BACKPROP, "api"], env=env, cwd=home, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        # Listening is not answering: a worker still importing the app holds the connection
        # the arbiter accepted, so on a busy machine a probe may time out before it refuses.
        wait_until(
            lambda: requests.get(f"{url}/health/live", timeout=5).ok,
            START_DEADLINE_SECONDS,
            "the API",
            ignoring=(requests.ConnectionError, requests.Timeout),
        )
        yield url
    finally:
        api.terminate()
        api.wait(timeout=30)


def in_chunks(body: bytes, size: int = 16_384) -> Iterator[bytes]:
    """A generator body: requests sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def post_chunked(url: str, body: bytes) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    return requests.post(url, data=in_chunks(body), headers=headers, timeout=30)


def padded(body: dict, size: int) -> bytes:
    return json.dumps(body).encode().ljust(size)


@pytest.mark.parametrize(
    "path", ["/v1/datasets", "/v1/jobs", "/v1/jobs/validate", "/v1/models/1/predict"]
)
def test_a_chunked_body_over_the_limit_is_413(api_url, path):
    response = post_chunked(api_url + path, padded({"builtin": "xor"}, MAX_REQUEST_BYTES + 1))
    assert response.status_code == 413, response.text
    assert "MAX_REQUEST_BYTES" in response.json()["error"]["message"]


def test_a_chunked_body_of_exactly_the_limit_is_read(api_url):
    response = post_chunked(api_url + "/v1/datasets", padded({"builtin": "xor"}, MAX_REQUEST_BYTES))
    assert response.status_code == 201, response.text
