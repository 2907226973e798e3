"""``Idempotency-Key``: a retried ``POST /v1/jobs`` with the same key and body returns the job the
first request created; the same key with another body is refused.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.db.models import TrainingJob, utcnow
from service.vocabulary import DataError

IDEMPOTENCY_HEADER = "Idempotency-Key"


class IdempotencyMismatch(DataError):
    """The idempotency key already names a job submitted with a different body."""

    def __init__(self):
        super().__init__(
            IDEMPOTENCY_HEADER, "already used for a different request body; send a new key"
        )


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's key for one submission, the hash of its body, and when keys older expire."""

    key: str
    request_hash: str
    created_after: datetime


@dataclass(frozen=True)
class Submission:
    """The job a submission stands for; ``replayed`` when an earlier request created it."""

    job: TrainingJob
    replayed: bool = False


def request_hash(body: dict) -> str:
    """SHA-256 of the body as canonical JSON (sorted keys, no spaces): equal bodies, equal hash."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key(key: str | None, body: dict, ttl_seconds: int) -> IdempotencyKey | None:
    """The submission's key, or None when the client sent no ``Idempotency-Key``."""
    if key is None:
        return None
    return IdempotencyKey(key, request_hash(body), utcnow() - timedelta(seconds=ttl_seconds))


def replay(job: TrainingJob, key: IdempotencyKey) -> Submission:
    """The earlier job of this key, when it was submitted with the same body."""
    if job.request_hash != key.request_hash:
        raise IdempotencyMismatch()
    return Submission(job, replayed=True)
