"""SECRET_KEY, or where it is empty a random secret kept in a file beside the SQLite database:
what signs access tokens (service/api/auth.py) and seals webhook secrets
(service/webhooks/secrets.py), read by every process that needs it."""

import contextlib
import fcntl
import os
import secrets
from pathlib import Path

from service.settings import Settings

SECRET_FILE_BYTES = 64


def signing_secret(settings: Settings) -> bytes:
    """``SECRET_KEY``, else the random secret in ``settings.secret_key_path()``, made on first
    use (readable by this user only; the first process to make it wins a race).

    A file shorter than a made secret (left empty by a creator of an older version that
    crashed between creating and writing it) is never used: it is replaced."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.secret_key_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        secret = create_secret(path)
    return secret if len(secret) >= SECRET_FILE_BYTES else replace_short_secret(path)


def replace_short_secret(path: Path) -> bytes:
    """Replace a short secret file, holding a lock beside it: two processes that both found it
    short must not each remove the other's new secret."""
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            secret = path.read_bytes()
            if len(secret) >= SECRET_FILE_BYTES:
                return secret  # another process replaced it while this one waited
            path.unlink()
        return create_secret(path)


def create_secret(path: Path) -> bytes:
    """Write a new secret to a temporary file, ``fsync`` it, then ``os.link`` it into place.

    The file appears whole or not at all, and a link (unlike a rename) never replaces: when
    another process linked first, its secret is the one every process reads and uses."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_hex(SECRET_FILE_BYTES // 2).encode())
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink()
    return path.read_bytes()
