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

import dataclasses
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Request, g, request

from service.api.context import current_generation, services
from service.api.errors import fail
from service.db import keys
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
# Keys and webhooks (whose secrets sign what other systems trust) need an admin key.
ADMIN_PREFIXES = ("/v1/keys", "/v1/webhooks")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="backprop"'}
# The made secret: 32 random bytes as hex text.

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
    req = request._get_current_object()  # one lookup of the proxy, not one per use
    if not guarded(req.path):
        return
    if services().settings.auth == "off":
        g.principal = LOCAL_PRINCIPAL
        return
    principal = g.principal = principal_from_request()
    needed = scope_needed(req)
    if _SCOPE_RANK[principal.scope] < _SCOPE_RANK[needed]:
        fail(403, f"This key's scope is {principal.scope}; this request needs {needed}.")


def scope_needed(req: Request) -> Scope:
    """Keys and webhooks need admin; GETs and reading POSTs need read; every other change
    needs write.

    Decided by the route that matched, never by the path's text: an alias may be called
    ``predict``."""
    if req.url_rule is None:
        return Scope.READ  # no route: the router's 404 or 405 answers, whoever asks
    rule = req.url_rule.rule
    if any(rule == prefix or rule.startswith(prefix + "/") for prefix in ADMIN_PREFIXES):
        return Scope.ADMIN
    if req.method in SAFE_METHODS:
        return Scope.READ
    if req.method == "POST" and rule.endswith(READING_POSTS):
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
