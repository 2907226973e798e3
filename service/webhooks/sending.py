"""One attempt of a delivery: claim it, check its URL's address again, POST the signed body to
that address (no redirects followed, WEBHOOK_TIMEOUT_SECONDS to connect and for each read),
record what came back and when the next attempt is due.

A delivery's attempts carry the same ``webhook-id`` (its event's id), so a receiver that got an
event twice (a worker lost after sending, before recording) can drop the copy.
"""

import http.client
import logging
import os
import socket
import ssl
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from service.db import webhooks
from service.settings import Settings
from service.vocabulary import DeliveryStatus
from service.webhooks.addresses import AddressRefused, Resolver, Target, check_url
from service.webhooks.secrets import Sealer, SecretUnreadable
from service.webhooks.signing import signed_headers

logger = logging.getLogger(__name__)

# The receiver's answer is not used: read at most this much of it, so the connection can close.
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "backprop-webhooks/1"


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address, whatever the host name resolves to now."""

    def __init__(self, target: Target, timeout: float, _tls: ssl.SSLContext | None = None):
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to the checked address, the certificate checked against the URL's host name."""

    def __init__(self, target: Target, timeout: float, tls: ssl.SSLContext | None = None):
        context = tls or ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self.address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


CONNECTIONS = {"http": PinnedHTTPConnection, "https": PinnedHTTPSConnection}


def post(
    target: Target,
    headers: dict[str, str],
    body: bytes,
    timeout: float,
    tls: ssl.SSLContext | None = None,
) -> int:
    """POST ``body`` to ``target`` and return the status code (a redirect is an answer like any
    other: never followed). ``tls``: the certificates trusted (None: the system's)."""
    connection = CONNECTIONS[target.scheme](target, timeout, tls)
    try:
        connection.request(
            "POST", target.path, body=body, headers={**headers, "User-Agent": USER_AGENT}
        )
        response = connection.getresponse()
        response.read(MAX_ANSWER_BYTES)
        return response.status
    finally:
        connection.close()


def lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Sender:
    """What a webhook worker needs to attempt deliveries."""

    sessions: sessionmaker[Session]
    settings: Settings
    sealer: Sealer
    resolve: Resolver | None = None
    # The certificate authorities HTTPS receivers are checked against (None: the system's).
    tls: ssl.SSLContext | None = None

    @classmethod
    def from_settings(cls, settings: Settings, sessions: sessionmaker[Session]) -> "Sender":
        return cls(sessions, settings, Sealer.from_settings(settings))

    def attempt(self, delivery_id: int) -> DeliveryStatus | None:
        """Make the delivery's next attempt, if it is due and nobody else makes it; return its
        status after the attempt (None: not attempted, or overtaken by a later attempt)."""
        settings = self.settings
        with self.sessions() as session:
            claim = webhooks.claim_delivery(
                session, delivery_id, lease_owner(), settings.webhook_lease_seconds()
            )
        if claim is None:
            return None
        outcome = self.send(claim)
        with self.sessions() as session:
            status = webhooks.end_attempt(
                session,
                claim,
                outcome,
                settings.webhook_max_attempts,
                settings.webhook_backoff_seconds,
            )
        logger.info(
            "webhook delivery %s attempt %s: %s -> %s",
            delivery_id,
            claim.number,
            outcome.status_code or outcome.error,
            status,
        )
        return status

    def send(self, claim: webhooks.Claim) -> webhooks.Outcome:
        """POST the claimed delivery once; an address refused, an unreadable secret or a
        network error is an outcome like a status code."""
        try:
            target = check_url(claim.url, self.settings.webhook_allow_private, self.resolve)
            secret = self.sealer.unseal(claim.secret_sealed)
            headers = signed_headers(secret, claim.event_id, int(time.time()), claim.body)
            timeout = self.settings.webhook_timeout_seconds
            status_code = post(target, headers, claim.body.encode(), timeout, self.tls)
        except (AddressRefused, SecretUnreadable) as error:
            return webhooks.Outcome(error=str(error))
        except (OSError, http.client.HTTPException) as error:
            return webhooks.Outcome(error=f"{type(error).__name__}: {error}")
        return webhooks.Outcome(status_code=status_code)
