"""API keys in the database: made, listed, revoked; checked by the secret's SHA-256.

A key reads ``bpk_<id>_<secret>``: the id finds the row, and the SHA-256 of the secret is
compared in constant time with the one stored. The secret itself is shown once, when made.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from model_core import MAX_INT32
from service.db.models import ApiKey, utcnow
from service.vocabulary import Scope

KEY_PREFIX = "bpk"
_KEY_PATTERN = re.compile(rf"{KEY_PREFIX}_([0-9]{{1,10}})_([A-Za-z0-9_-]{{20,100}})")


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    """What checking a key needs to know about it, kept by API processes between requests."""

    key_id: int
    tenant: str
    scope: Scope
    secret_sha256: str
    expires_at: datetime | None
    revoked: bool
    budget_key_id: int  # whose rate budget the key's requests spend (its own, or its minter's)

    @classmethod
    def of(cls, row: ApiKey) -> "KeyRecord":
        return cls(
            row.id,
            row.tenant,
            row.scope,
            row.secret_sha256,
            row.expires_at,
            row.revoked_at is not None,
            row.budget_key_id or row.id,
        )

    def usable(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(sha256_hex(secret), self.secret_sha256)


def row_id(digits: str) -> int | None:
    """The id ``digits`` spell, or None when no row can have it (above MAX_INT32)."""
    value = int(digits)
    return value if value <= MAX_INT32 else None


def parse_key(text: str) -> tuple[int, str] | None:
    """``(key id, secret)`` of a key's text, or None when it is not shaped like one."""
    match = _KEY_PATTERN.fullmatch(text)
    key_id = None if match is None else row_id(match.group(1))
    return None if key_id is None else (key_id, match.group(2))


def create_key(
    session: Session,
    tenant: str,
    scope: Scope,
    expires_in_days: float | None = None,
    description: str | None = None,
    budget_key_id: int | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key of ``tenant`` and commit; return its row and its text (shown only now).

    ``budget_key_id``: the key whose rate budget the new key spends (a minting key's budget
    key); None: its own."""
    secret = secrets.token_urlsafe(32)
    expires_at = None if expires_in_days is None else utcnow() + timedelta(days=expires_in_days)
    row = ApiKey(
        tenant=tenant,
        scope=scope,
        secret_sha256=sha256_hex(secret),
        description=description,
        expires_at=expires_at,
        budget_key_id=budget_key_id,
    )
    session.add(row)
    session.commit()
    return row, f"{KEY_PREFIX}_{row.id}_{secret}"


def list_keys(session: Session, tenant: str | None = None) -> list[ApiKey]:
    """Every key (of ``tenant`` when given), oldest first."""
    statement = select(ApiKey).order_by(ApiKey.id)
    if tenant is not None:
        statement = statement.where(ApiKey.tenant == tenant)
    return list(session.scalars(statement))


def get_key(session: Session, key_id: int) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def revoke_key(session: Session, row: ApiKey) -> ApiKey:
    """Revoke the key now (a key already revoked keeps its first revocation time) and commit."""
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    session.commit()
    return row


def count_live_keys(session: Session, tenant: str) -> int:
    """The keys of ``tenant`` that are neither revoked nor expired."""
    statement = select(func.count(ApiKey.id)).where(
        ApiKey.tenant == tenant,
        ApiKey.revoked_at.is_(None),
        or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > utcnow()),
    )
    return session.scalar(statement)
