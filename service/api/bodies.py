"""Request bodies limited to ``MAX_REQUEST_BYTES`` whether they come with a Content-Length or
chunked: a body over the limit is a 413, never a body cut at the limit. A JSON body nested deeper
than ``MAX_JSON_DEPTH`` is a 400 before anything parses it.
"""

from typing import IO

from flask import Flask, Request, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

from service.api.errors import DeclaredResponse, fail
from service.json_depth import MAX_JSON_DEPTH, depth_unless_shallow
from service.serving.inference_protocol import HEADER_LENGTH

# Each read of a large body, at most.
BODY_READ_BYTES = 1 << 20


class UnsizedBodyStream(LimitedStream):
    """A body without Content-Length (chunked), cut off with a 413 once it is over ``max_bytes``.

    werkzeug's own stream for it stops reading at the maximum and hands over the first
    ``max_bytes`` bytes of a longer body as the whole of it: a JSON body cut there is a 400 for
    invalid JSON, or is accepted. Reading up to one byte more tells the two apart.
    """

    def __init__(self, stream: IO[bytes], max_bytes: int):
        super().__init__(stream, max_bytes + 1, is_max=True)
        self.max_bytes = max_bytes

    def readinto(self, buffer: bytearray) -> int | None:
        size = super().readinto(buffer)
        if self.tell() > self.max_bytes:
            raise RequestEntityTooLarge()
        return size


class BodyLimitedRequest(Request):
    """Flask's request, whose body is limited to ``MAX_CONTENT_LENGTH`` chunked or not."""

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        unsized = self.content_length is None and "wsgi.input_terminated" in self.environ
        if limit is None or not unsized:
            return super().stream
        return UnsizedBodyStream(self.environ["wsgi.input"], limit)


def read_infer_body(req: Request) -> bytes | memoryview:
    """The body of a /v2 infer. One in the binary tensor extension (``HEADER_LENGTH``) with a
    Content-Length is read with large reads straight into a buffer of that length (no chunks
    joined, no copy at the end: 10,000 rows of 784 FP32 are 31 MB); any other as ``get_data``
    reads it (a JSON one ``refuse_deep_json`` has already read and kept). Over
    ``MAX_REQUEST_BYTES`` either is a 413, as with ``get_data``."""
    length = req.content_length
    if length is None or HEADER_LENGTH not in req.headers:
        return req.get_data(cache=False)
    stream, view = req.stream, memoryview(bytearray(length))
    filled = 0
    while filled < length:
        count = stream.readinto(view[filled : filled + BODY_READ_BYTES])
        if not count:  # a stream that ended early (werkzeug raises ClientDisconnected first)
            break
        filled += count
    return view[:filled]


def refuse_deep_json() -> None:
    """``before_request``: a 400 for a JSON body nested deeper than ``MAX_JSON_DEPTH``.

    Every parser of the API (Flask's, webargs', the /v2 protocol's) recurses once per level. A
    /v2 body with ``Inference-Header-Content-Length`` is JSON only up to that length, binary
    after it: the protocol's parser checks its header itself.
    """
    req = request._get_current_object()  # one lookup of the proxy, not one per use
    if not req.is_json or HEADER_LENGTH in req.headers:
        return
    depth = depth_unless_shallow(req.get_data(cache=True))
    if depth > MAX_JSON_DEPTH:
        fail(400, too_deep(depth), {"json": [too_deep(depth)]})


def too_deep(depth: int) -> str:
    return f"The JSON body nests {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted."


def install_json_depth_check(app: Flask) -> None:
    app.before_request(refuse_deep_json)


def takes_json(_path: str | None, operation: dict) -> bool:
    return "application/json" in operation.get("requestBody", {}).get("content", {})


def json_body_errors_doc() -> DeclaredResponse:
    """Every operation that takes a JSON body documents the 400 of a body that is not JSON or
    nests too deeply."""
    return DeclaredResponse(
        400,
        {"description": f"Not JSON, or JSON nested deeper than {MAX_JSON_DEPTH} levels"},
        takes_json,
    )
