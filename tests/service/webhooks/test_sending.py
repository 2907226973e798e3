"""Delivering webhooks in-process against a real HTTP receiver on loopback: the Standard
Webhooks signature checked with the `standardwebhooks` package, retries with backoff up to
WEBHOOK_MAX_ATTEMPTS, no redirects, and internal addresses refused again at delivery (with a
stubbed resolver: no connection leaves loopback)."""

import dataclasses
import json
import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook as Verifier

from service.commands.cli import main
from service.db import webhooks
from service.db.models import WebhookDelivery, utcnow
from service.settings import Settings
from service.vocabulary import DeliveryStatus
from service.webhooks.secrets import Sealer, make_secret
from service.webhooks.sending import Sender
from tests.conftest import BACKENDS, database_url
from tests.service.webhooks.receivers import Receiver

SECRET_KEY = "k" * 64


@pytest.fixture
def sender(sessions) -> Sender:
    settings = Settings(
        secret_key=SECRET_KEY,
        webhook_allow_private=True,
        webhook_backoff_seconds=30,
        webhook_max_attempts=4,
    )
    return Sender(sessions, settings, Sealer.from_settings(settings))


def subscribe(sender: Sender, url: str, secret: str, events=("alias.moved",)) -> int:
    with sender.sessions() as session:
        hook = webhooks.create_webhook(session, url, list(events), sender.sealer.seal(secret))
        return hook.id


def emit(sessions, event_type="alias.moved", tenant="default") -> list[int]:
    with sessions() as session:
        data = {"name": "digits", "alias": "production", "old_version": 1, "new_version": 2}
        deliveries = webhooks.record_event(session, tenant, event_type, data)
        session.commit()
        return [delivery.id for delivery in deliveries]


def make_due(sessions, delivery_id: int) -> None:
    """Skip the backoff: the next attempt is due now."""
    with sessions() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()


def delivery(sessions, delivery_id: int) -> WebhookDelivery:
    with sessions() as session:
        return session.get(WebhookDelivery, delivery_id)


def test_a_delivery_is_signed_as_standard_webhooks_verifiers_expect(sender, sessions):
    secret = make_secret()
    with Receiver() as receiver:
        subscribe(sender, receiver.url, secret)
        [delivery_id] = emit(sessions)
        assert sender.attempt(delivery_id) is DeliveryStatus.SUCCEEDED
    [got] = receiver.received
    assert got.path == "/hooks/backprop"
    payload = Verifier(secret).verify(got.body, got.headers)
    assert payload["type"] == "alias.moved"
    assert payload["data"] == {
        "name": "digits",
        "alias": "production",
        "old_version": 1,
        "new_version": 2,
    }
    assert got.headers["webhook-id"] == delivery(sessions, delivery_id).event_id
    with pytest.raises(Exception, match="No matching signature"):
        Verifier(make_secret()).verify(got.body, got.headers)


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt(sender, sessions):
    secret = make_secret()
    with Receiver(statuses=[500, 500, 500]) as receiver:
        subscribe(sender, receiver.url, secret)
        [delivery_id] = emit(sessions)
        for expected_wait in (30, 60, 120):
            started = utcnow()
            assert sender.attempt(delivery_id) is DeliveryStatus.PENDING
            assert sender.attempt(delivery_id) is None  # not due before its backoff ends
            wait = delivery(sessions, delivery_id).next_attempt_at - started
            assert timedelta(seconds=expected_wait) <= wait < timedelta(seconds=expected_wait + 5)
            make_due(sessions, delivery_id)
        assert sender.attempt(delivery_id) is DeliveryStatus.SUCCEEDED
    ids = {got.headers["webhook-id"] for got in receiver.received}
    assert len(receiver.received) == 4 and len(ids) == 1
    for got in receiver.received:
        Verifier(secret).verify(got.body, got.headers)
    tries = delivery(sessions, delivery_id).tries
    assert [(a.number, a.status_code) for a in tries] == [(1, 500), (2, 500), (3, 500), (4, 200)]


def test_a_delivery_fails_for_good_after_webhook_max_attempts(sender, sessions):
    with Receiver(statuses=[503] * 10) as receiver:
        subscribe(sender, receiver.url, make_secret())
        [delivery_id] = emit(sessions)
        for _ in range(3):
            assert sender.attempt(delivery_id) is DeliveryStatus.PENDING
            make_due(sessions, delivery_id)
        assert sender.attempt(delivery_id) is DeliveryStatus.FAILED
        assert sender.attempt(delivery_id) is None
    assert len(receiver.received) == 4


def test_a_redirect_is_an_answer_not_followed(sender, sessions):
    with Receiver(statuses=[302], extra_headers={"Location": "http://169.254.169.254/"}) as rx:
        subscribe(sender, rx.url, make_secret())
        [delivery_id] = emit(sessions)
        assert sender.attempt(delivery_id) is DeliveryStatus.PENDING
    assert len(rx.received) == 1
    assert delivery(sessions, delivery_id).tries[0].status_code == 302


@pytest.mark.parametrize("address", ["169.254.169.254", "10.0.0.1", "::ffff:127.0.0.1"])
def test_a_host_that_resolves_inside_by_delivery_time_is_refused_without_connecting(
    sessions, address
):
    settings = Settings(secret_key=SECRET_KEY, webhook_max_attempts=2)
    resolved = []

    def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return [address]

    sender = Sender(sessions, settings, Sealer.from_settings(settings), resolve=resolver)
    subscribe(sender, "https://hooks.example.com/in", make_secret())
    [delivery_id] = emit(sessions)
    assert sender.attempt(delivery_id) is DeliveryStatus.PENDING
    [attempt] = delivery(sessions, delivery_id).tries
    assert attempt.status_code is None
    assert attempt.error.startswith(f"hooks.example.com: {address} is")
    assert resolved == ["hooks.example.com"]


def test_only_subscribed_webhooks_of_the_tenant_get_the_event(sender, sessions):
    subscribe(sender, "http://127.0.0.1:9/a", make_secret(), events=["job.finished"])
    listening = subscribe(sender, "http://127.0.0.1:9/b", make_secret())
    with sender.sessions() as session:
        webhooks.create_webhook(session, "http://127.0.0.1:9/c", ["alias.moved"], "x")
        session.execute(
            update(webhooks.Webhook)
            .where(webhooks.Webhook.url.endswith("/c"))
            .values(tenant="other")
        )
        session.commit()
    ids = emit(sessions)
    assert [delivery(sessions, i).webhook_id for i in ids] == [listening]
    body = json.loads(delivery(sessions, ids[0]).body)
    assert set(body) == {"type", "timestamp", "data"}


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_an_attempt_that_outlived_its_lease_does_not_overwrite_the_next(sender, sessions):
    with Receiver() as receiver:
        subscribe(sender, receiver.url, make_secret())
        [delivery_id] = emit(sessions)
        with sessions() as session:
            first = webhooks.claim_delivery(session, delivery_id, "lost:1", lease_seconds=0)
        assert sender.attempt(delivery_id) is DeliveryStatus.SUCCEEDED
        with sessions() as session:
            late = webhooks.end_attempt(session, first, webhooks.Outcome(500), 8, 1.0)
        assert late is None
    tries = delivery(sessions, delivery_id).tries
    assert [(a.number, a.owner, a.status_code) for a in tries][0][:2] == (1, "lost:1")
    assert tries[0].finished_at is None and tries[1].status_code == 200


def test_secrets_survive_a_rotation_of_secret_key(sessions):
    old = Sealer(b"old-key")
    sealed = old.seal("whsec_abc")
    rotating = Sealer(b"new-key", previous=b"old-key")
    assert rotating.unseal(sealed) == "whsec_abc"
    resealed = rotating.reseal(sealed)
    assert Sealer(b"new-key").unseal(resealed) == "whsec_abc"
    with pytest.raises(Exception, match="SECRET_KEY_PREVIOUS"):
        Sealer(b"new-key").unseal(sealed)


def test_settings_read_the_webhook_variables():
    settings = Settings.from_env({"WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_MAX_ATTEMPTS": "3"})
    assert settings.webhook_allow_private is True and settings.webhook_max_attempts == 3
    assert dataclasses.replace(settings, webhook_timeout_seconds=2).webhook_lease_seconds() == 6
    with pytest.raises(ValueError, match="WEBHOOK_ALLOW_PRIVATE"):
        Settings.from_env({"WEBHOOK_ALLOW_PRIVATE": "maybe"})


def test_backprop_webhooks_reencrypt_seals_every_secret_under_the_new_key(
    sessions, monkeypatch, capsys
):
    with sessions() as session:
        hook = webhooks.create_webhook(
            session, "http://127.0.0.1:9/", ["alias.moved"], Sealer(b"old").seal("whsec_abc")
        )
    monkeypatch.setenv("DATABASE_URL", database_url(sessions))
    monkeypatch.setenv("SECRET_KEY", "new")
    monkeypatch.setenv("SECRET_KEY_PREVIOUS", "old")
    assert main(["webhooks", "reencrypt"]) == 0
    assert capsys.readouterr().out == "1 webhook secrets sealed under the current SECRET_KEY\n"
    with sessions() as session:
        sealed = session.get(webhooks.Webhook, hook.id).secret_sealed
    assert Sealer(b"new").unseal(sealed) == "whsec_abc"


def self_signed(tmp_path, host: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A certificate for ``host`` alone: the receiver's context, and a sender's that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server, ssl.create_default_context(cadata=pem.decode())


def test_https_goes_to_the_checked_address_and_checks_the_certificate_of_the_url_host(
    sessions, tmp_path
):
    server_tls, trusting = self_signed(tmp_path, "hooks.test")
    settings = Settings(secret_key=SECRET_KEY, webhook_allow_private=True)
    resolved = {"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
    sender = Sender(
        sessions,
        settings,
        Sealer.from_settings(settings),
        resolve=lambda host, _port: resolved[host],
        tls=trusting,
    )
    secret = make_secret()
    with Receiver(tls=server_tls) as receiver:
        subscribe(sender, f"https://hooks.test:{receiver.port}/in", secret)
        subscribe(sender, f"https://other.test:{receiver.port}/in", secret)
        good, wrong_name = emit(sessions)
        assert sender.attempt(good) is DeliveryStatus.SUCCEEDED
        assert sender.attempt(wrong_name) is DeliveryStatus.PENDING
    [got] = receiver.received
    assert got.headers["Host"] == f"hooks.test:{receiver.port}"
    Verifier(secret).verify(got.body, got.headers)
    [refused] = delivery(sessions, wrong_name).tries
    assert refused.status_code is None and "other.test" in refused.error
