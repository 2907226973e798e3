"""Request bodies limited to ``MAX_REQUEST_BYTES`` whether they come with a Content-Length or
chunked: a body over the limit is a 413, never a body cut at the limit.
"""

from typing import IO

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream


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
