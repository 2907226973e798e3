"""The receiver docs/operations.md shows accepts what the service signs, once per event, and
refuses a forged signature."""

import re
import time
from pathlib import Path

from service.db.models import utcnow
from service.db.webhooks import event_body
from service.webhooks.secrets import make_secret
from service.webhooks.signing import signed_headers

OPERATIONS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


def documented_receiver(secret: str) -> dict:
    """The namespace of the doc's Python receiver, run with ``secret``."""
    blocks = re.findall(r"^```python\n(.*?)^```", OPERATIONS.read_text(), re.M | re.S)
    [code] = [block for block in blocks if "standardwebhooks" in block]
    assert len(code.strip().splitlines()) <= 14
    namespace: dict = {"__name__": "documented_receiver"}
    exec(code.replace('"whsec_..."', repr(secret)), namespace)  # noqa: S102 - our own doc
    return namespace


def test_the_documented_receiver_verifies_our_signature_and_drops_copies(capsys):
    secret = make_secret()
    receiver = documented_receiver(secret)
    client = receiver["app"].test_client()
    body = event_body("alias.moved", {"name": "xor", "alias": "prod"}, utcnow())
    headers = signed_headers(secret, "msg_1", int(time.time()), body)
    assert client.post("/backprop", data=body, headers=headers).status_code == 204
    assert client.post("/backprop", data=body, headers=headers).status_code == 204
    assert capsys.readouterr().out == "alias.moved {'name': 'xor', 'alias': 'prod'}\n"
    forged = signed_headers(make_secret(), "msg_2", int(time.time()), body)
    assert client.post("/backprop", data=body, headers=forged).status_code == 500
