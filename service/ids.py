"""Random ids: a uuid4's 32 hex digits, made without building a ``uuid.UUID``."""

import os

# uuid4's fixed bits: the variant (10, RFC 4122) and the version (4).
VARIANT_AND_VERSION_KEPT = ~(0xC000 << 48) & ~(0xF000 << 64)
VARIANT_AND_VERSION_SET = (0x8000 << 48) | (4 << 76)


def uuid4_hex() -> str:
    """``uuid.uuid4().hex``, from the same 16 bytes of ``os.urandom``, in half its time: the
    two ids a prediction makes (its request's, its own) cost 1 us each, not 2."""
    random = int.from_bytes(os.urandom(16))
    return f"{random & VARIANT_AND_VERSION_KEPT | VARIANT_AND_VERSION_SET:032x}"
