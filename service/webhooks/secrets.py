"""Webhook secrets in the Standard Webhooks format (``whsec_`` + base64 of random bytes), sealed
at rest with Fernet under a key derived from SECRET_KEY: the API seals, every webhook worker
unseals to sign, so they must share SECRET_KEY.

Rotation: with SECRET_KEY the new key and SECRET_KEY_PREVIOUS the old one, a secret sealed
under either unseals, and ``reseal`` moves one to the new key (`backprop webhooks reencrypt`).
"""

import argparse
import base64
import binascii
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from service.db import webhooks
from service.db.session import make_session_factory
from service.secret_key import signing_secret
from service.settings import Settings

PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MADE_SECRET_BYTES = 32
MAX_SECRET_BYTES = 64
# The derived Fernet key is for this use only: a token signer with the same SECRET_KEY
# (service/api/auth.py) uses it apart.
PURPOSE = b"backprop webhook secrets\0"


class SecretUnreadable(Exception):
    """A sealed secret that no configured key opens (SECRET_KEY changed without a rotation)."""


def make_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(MADE_SECRET_BYTES)).decode()


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is not a Standard Webhooks secret we accept, or None."""
    if not secret.startswith(PREFIX):
        return f"must start with {PREFIX}"
    try:
        key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except binascii.Error:
        return f"must be {PREFIX} followed by standard base64"
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        return f"must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes (it has {len(key)})"
    return None


def secret_bytes(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    return base64.b64decode(secret.removeprefix(PREFIX))


def fernet_key(secret_key: bytes) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(PURPOSE + secret_key).digest())


class Sealer:
    """Seals with SECRET_KEY's Fernet key; unseals with it or SECRET_KEY_PREVIOUS's."""

    def __init__(self, current: bytes, previous: bytes = b""):
        keys = [Fernet(fernet_key(current))]
        if previous:
            keys.append(Fernet(fernet_key(previous)))
        self.fernet = MultiFernet(keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Sealer":
        return cls(signing_secret(settings), settings.secret_key_previous.encode())

    def seal(self, secret: str) -> str:
        return self.fernet.encrypt(secret.encode()).decode()

    def unseal(self, sealed: str) -> str:
        try:
            return self.fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                "the webhook's secret was sealed under another SECRET_KEY: set the old one as "
                "SECRET_KEY_PREVIOUS (docs/operations.md, rotating SECRET_KEY)"
            ) from None

    def reseal(self, sealed: str) -> str:
        """The same secret sealed under the current key."""
        try:
            return self.fernet.rotate(sealed.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("a webhook secret opens under neither key") from None


def reencrypt_secrets(settings: Settings, _args: argparse.Namespace) -> int:
    """`backprop webhooks reencrypt`: seal every webhook secret under SECRET_KEY."""
    sealer = Sealer.from_settings(settings)
    with make_session_factory(settings.database_url)() as session:
        count = webhooks.reseal_secrets(session, sealer.reseal)
    print(f"{count} webhook secrets sealed under the current SECRET_KEY")
    return 0
