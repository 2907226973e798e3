"""The Standard Webhooks signature: ``v1,`` + base64 of HMAC-SHA256 over
``{webhook-id}.{webhook-timestamp}.{body}`` keyed with the secret's bytes."""

import base64
import hashlib
import hmac

from service.webhooks.secrets import secret_bytes


def signature(secret: str, event_id: str, timestamp: int, body: str) -> str:
    signed = f"{event_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, event_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The headers of one attempt: the timestamp is the attempt's (seconds since the epoch), so
    a receiver's tolerance window holds for retries too."""
    return {
        "Content-Type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, event_id, timestamp, body),
    }
