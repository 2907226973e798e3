"""Random ids: a uuid4's 32 hex digits, made without building a ``uuid.UUID``, from
``os.urandom``'s bytes drawn a few kilobytes at a time.

``os.urandom`` releases the GIL around its system call, which in a busy API worker hands the
GIL to another thread and makes this one wait to take it back: twice per prediction (its
request id, its own id). Drawn 256 ids' worth at once, the same bytes, in the order drawn, make
the same ids for one call in 256. A forked child starts with none drawn, so that it never repeats
its parent's ids.
"""

import os
import threading

# uuid4's fixed bits: the variant (10, RFC 4122) and the version (4).
VARIANT_AND_VERSION_KEPT = ~(0xC000 << 48) & ~(0xF000 << 64)
VARIANT_AND_VERSION_SET = (0x8000 << 48) | (4 << 76)
ID_BYTES = 16
DRAWN_BYTES = ID_BYTES * 256


class RandomBytes:
    """``os.urandom``'s bytes handed out ``ID_BYTES`` at a time, drawn ``DRAWN_BYTES`` at once."""

    def __init__(self):
        self.forget()

    def forget(self) -> None:
        """Drop what was drawn (a new lock too: a forked child may inherit the old one held)."""
        self.lock = threading.Lock()
        self.drawn = b""
        self.taken = 0

    def take(self) -> bytes:
        with self.lock:
            if self.taken >= len(self.drawn):
                self.drawn, self.taken = os.urandom(DRAWN_BYTES), 0
            start = self.taken
            self.taken += ID_BYTES
            return self.drawn[start : start + ID_BYTES]


RANDOM_BYTES = RandomBytes()
os.register_at_fork(after_in_child=RANDOM_BYTES.forget)


def uuid4_hex() -> str:
    """``uuid.uuid4().hex``, from the next 16 of ``os.urandom``'s bytes."""
    random = int.from_bytes(RANDOM_BYTES.take())
    return f"{random & VARIANT_AND_VERSION_KEPT | VARIANT_AND_VERSION_SET:032x}"
