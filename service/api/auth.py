"""Who is calling: API keys, their tenant and scope, checked before every /v1 and /v2 request.

``g.principal`` is set for every /v1 and /v2 request: with ``AUTH=off`` the ``default`` tenant
with every right; with ``AUTH=required`` the key's tenant and scope, from
``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, or on a GET (event streams and images,
which a browser cannot give headers) from a short-lived ``?access_token=`` signed with the key.

A missing, wrong, expired or revoked key is a 401 with ``WWW-Authenticate: Bearer``; a key
whose scope does not cover the request is a 403. Keys are read from the database and kept per
process until the registry generation moves, which a revocation moves: it is seen by the very
next request of every process.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flask import g, request

from service.api.context import current_generation, services
from service.api.errors import fail
from service.db import keys
from service.settings import Settings
from service.vocabulary import DEFAULT_TENANT, Scope

OPEN_PREFIXES = ("/v2/health/",)
GUARDED_PREFIXES = ("/v1/", "/v2/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The routes whose POSTs only read: a read key may make them.
READING_POSTS = (
    "/predict",
    "/infer",
    "/evaluate",
    "/explain",
    "/importance",
    "/v1/jobs/validate",
    "/v1/tokens",
)
ADMIN_PREFIX = "/v1/keys"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="backprop"'}
# The made secret: 32 random bytes as hex text.
SECRET_FILE_BYTES = 64

ACCESS_TOKEN_PREFIX = "bpt"
MAX_ACCESS_TOKEN_SECONDS = 3600
_ACCESS_TOKEN_PATTERN = re.compile(
    rf"{ACCESS_TOKEN_PREFIX}_([0-9]{{1,10}})_([0-9]{{1,12}})_([0-9a-f]{{64}})"
)


@dataclass(frozen=True)
class Principal:
    """The tenant a request acts for, and what it may do there (``key_id`` None: AUTH=off), and
    the key whose rate budget it spends (its own, or the key that minted it)."""

    tenant: str
    scope: Scope
    key_id: int | None
    budget_key_id: int | None = None


LOCAL_PRINCIPAL = Principal(DEFAULT_TENANT, Scope.ADMIN, None)

_SCOPE_RANK = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


def guarded(path: str) -> bool:
    return (path in ("/v1", "/v2") or path.startswith(GUARDED_PREFIXES)) and not path.startswith(
        OPEN_PREFIXES
    )


def identify_caller() -> None:
    """``before_request``: set ``g.principal``, or answer 401 / 403."""
    if not guarded(request.path):
        return
    if services().settings.auth == "off":
        g.principal = LOCAL_PRINCIPAL
        return
    g.principal = principal_from_request()
    needed = scope_needed()
    if _SCOPE_RANK[g.principal.scope] < _SCOPE_RANK[needed]:
        fail(403, f"This key's scope is {g.principal.scope}; this request needs {needed}.")


def scope_needed() -> Scope:
    """Keys need admin; GETs and reading POSTs need read; every other change needs write.

    Decided by the route that matched, never by the path's text: an alias may be called
    ``predict``."""
    if request.url_rule is None:
        return Scope.READ  # no route: the router's 404 or 405 answers, whoever asks
    rule = request.url_rule.rule
    if rule == ADMIN_PREFIX or rule.startswith(ADMIN_PREFIX + "/"):
        return Scope.ADMIN
    if request.method in SAFE_METHODS:
        return Scope.READ
    if request.method == "POST" and rule.endswith(READING_POSTS):
        return Scope.READ
    return Scope.WRITE


def principal_from_request() -> Principal:
    text = presented_key()
    if text is not None:
        return principal_for_key(text)
    token = request.args.get("access_token")
    if token is not None and request.method in SAFE_METHODS:
        return principal_for_access_token(token)
    unauthorized("An API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`.")


def bearer_token() -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` header, if the request has one."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def presented_key() -> str | None:
    return bearer_token() or request.headers.get("X-API-Key") or None


def principal_for_key(text: str) -> Principal:
    parsed = keys.parse_key(text)
    record = None if parsed is None else key_record(parsed[0])
    if record is None or not record.matches(parsed[1]):
        unauthorized("The API key is not valid.")
    return usable_principal(record)


def usable_principal(record: keys.KeyRecord) -> Principal:
    if not record.usable(datetime.now(UTC)):
        unauthorized(f"API key {record.key_id} has expired or been revoked.")
    return Principal(record.tenant, record.scope, record.key_id, record.budget_key_id)


def key_record(key_id: int) -> keys.KeyRecord | None:
    """The key's record from this process's cache (valid for one registry generation)."""
    context = services()

    def load() -> keys.KeyRecord | None:
        with context.sessions() as session:
            row = keys.get_key(session, key_id)
            return None if row is None else keys.KeyRecord.of(row)

    return context.keys.get(current_generation(), key_id, load)


def access_token(record: keys.KeyRecord, seconds: int) -> tuple[str, int]:
    """A token standing for the key, with read scope, on GETs for ``seconds``, and when it
    expires (Unix time).

    Signed with the service's secret (``SECRET_KEY``, never in the database: a copy of the
    database cannot mint tokens) and the key's stored hash (revoking the key voids every token
    made from it)."""
    expires = int(time.time()) + seconds
    return f"{ACCESS_TOKEN_PREFIX}_{record.key_id}_{expires}_{_signature(record, expires)}", expires


def _signature(record: keys.KeyRecord, expires: int) -> str:
    secret = services().signing_secret + bytes.fromhex(record.secret_sha256)
    message = f"{record.key_id}.{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def principal_for_access_token(token: str) -> Principal:
    match = _ACCESS_TOKEN_PATTERN.fullmatch(token)
    key_id = None if match is None else keys.row_id(match.group(1))
    record = None if key_id is None else key_record(key_id)
    if record is None:
        unauthorized("The access token is not valid.")
    expires = int(match.group(2))
    if not hmac.compare_digest(_signature(record, expires), match.group(3)):
        unauthorized("The access token is not valid.")
    if not 0 < expires - time.time() <= MAX_ACCESS_TOKEN_SECONDS:
        unauthorized("The access token has expired; ask POST /v1/tokens for another.")
    return dataclasses.replace(usable_principal(record), scope=Scope.READ)


def unauthorized(message: str):
    fail(401, message, headers=CHALLENGE)


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
