"""Every body over MAX_REQUEST_BYTES is a 413 with the error envelope, chunked or not.

A chunked body has no Content-Length: the server sets ``wsgi.input_terminated`` and the app must
count the bytes as it reads them.
"""

import io
import json

import pytest
from werkzeug.test import EnvironBuilder

from tests.factories import assert_envelope, job_body
from tests.service.conftest import MAX_REQUEST_BYTES

JSON_BODIES = {
    "dataset": ("/v1/datasets", {"builtin": "xor"}),
    "job": ("/v1/jobs", job_body(1)),
    "dry run": ("/v1/jobs/validate", job_body(1)),
    "predict": ("/v1/models/1/predict", {"instances": [[0, 1]]}),
}


def post_chunked(client, path: str, body: bytes, content_type: str = "application/json"):
    """POST ``body`` as the server hands over a chunked request: no Content-Length, and
    ``wsgi.input_terminated`` set."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def padded(body: dict, size: int) -> bytes:
    """``body`` as JSON followed by spaces up to ``size`` bytes: valid JSON whatever its length,
    and so is every prefix of it that holds the whole object."""
    return json.dumps(body).encode().ljust(size)


@pytest.mark.parametrize("case", JSON_BODIES, ids=list(JSON_BODIES))
def test_a_chunked_json_body_one_byte_over_the_limit_is_413(client, row_counts, case):
    path, body = JSON_BODIES[case]
    client.post("/v1/datasets", json={"builtin": "xor"})
    response = post_chunked(client, path, padded(body, MAX_REQUEST_BYTES + 1))
    assert "MAX_REQUEST_BYTES" in assert_envelope(response, 413)["message"]
    assert row_counts()["datasets"] == 1 and row_counts()["training_jobs"] == 0


def test_a_chunked_body_cut_at_the_limit_is_413_not_invalid_json(client, row_counts):
    body = {"task": "regression", "features": [[1.0] * 10] * 5000, "targets": [1.0] * 5000}
    response = post_chunked(client, "/v1/datasets", json.dumps(body).encode())
    assert_envelope(response, 413)
    assert row_counts()["datasets"] == 0


def test_a_chunked_body_of_exactly_the_limit_is_read(client):
    response = post_chunked(client, "/v1/datasets", padded({"builtin": "xor"}, MAX_REQUEST_BYTES))
    assert response.status_code == 201, response.get_json()


def test_a_chunked_multipart_upload_over_the_limit_is_413(client, row_counts):
    text = "a,b\n" + "1,2\n" * (MAX_REQUEST_BYTES // 4)
    form = {"task": "regression", "target": "b", "file": (io.BytesIO(text.encode()), "big.csv")}
    environ = EnvironBuilder(method="POST", data=form).get_environ()
    body = environ["wsgi.input"].read()
    assert_envelope(post_chunked(client, "/v1/datasets", body, environ["CONTENT_TYPE"]), 413)
    assert row_counts()["datasets"] == 0
