"""AUTH=required: keys by header or signed access token, 401s and 403s, expiry and revocation
seen at once by every API process, and the keys API of an admin key."""

import dataclasses
import hashlib
import hmac
import multiprocessing
import re
import time
from datetime import timedelta

import pytest

from service.api.app import create_app
from service.commands.cli import main
from service.db import keys
from service.db.models import ApiKey, utcnow
from service.secret_key import signing_secret
from service.settings import Settings
from tests.factories import api_key, assert_envelope, bearer, job_body


@pytest.fixture
def settings(settings) -> Settings:
    return dataclasses.replace(settings, auth="required")


@pytest.fixture
def write_key(sessions) -> str:
    return api_key(sessions, "alice", "write")


def key_id(key: str) -> int:
    return keys.parse_key(key)[0]


@pytest.mark.parametrize("path", ["/v1/datasets", "/v1/models", "/v1/keys", "/v2"])
def test_no_key_is_a_401_with_a_bearer_challenge(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if path.startswith("/v2"):
        assert set(response.get_json()) == {"error"}
    else:
        assert_envelope(response, 401)


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/v2/health/live"])
def test_health_probes_stay_open(client, path):
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "bpk_1_" + "A" * 43},
        {"X-API-Key": "bpk_999_" + "A" * 43},
    ],
)
def test_a_wrong_key_is_a_401(client, write_key, headers):
    response = client.get("/v1/datasets", headers=headers)
    assert_envelope(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_key_works_as_bearer_or_x_api_key(client, write_key):
    assert client.get("/v1/datasets", headers=bearer(write_key)).status_code == 200
    assert client.get("/v1/datasets", headers={"X-API-Key": write_key}).status_code == 200


def test_an_expired_key_is_a_401(client, sessions, write_key):
    with sessions() as session:
        session.get(ApiKey, key_id(write_key)).expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    error = assert_envelope(client.get("/v1/datasets", headers=bearer(write_key)), 401)
    assert "expired or been revoked" in error["message"]


def test_a_revocation_is_seen_at_once_by_another_api_process(
    client, settings, write_key, monkeypatch
):
    other = create_app(settings).test_client()
    for api in (client, other):  # both have checked, and keep, the key
        assert api.get("/v1/datasets", headers=bearer(write_key)).status_code == 200
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    assert main(["keys", "revoke", str(key_id(write_key))]) == 0
    for api in (client, other):
        assert_envelope(api.get("/v1/datasets", headers=bearer(write_key)), 401)


def test_scopes_read_write_admin(client, sessions):
    reader = api_key(sessions, "alice", "read")
    writer = api_key(sessions, "alice", "write")
    admin = api_key(sessions, "alice", "admin")
    dataset = client.post("/v1/datasets", json={"builtin": "xor"}, headers=bearer(writer))
    assert dataset.status_code == 201
    body = job_body(dataset.get_json()["id"])
    assert client.get("/v1/datasets", headers=bearer(reader)).status_code == 200
    assert client.post("/v1/jobs/validate", json=body, headers=bearer(reader)).status_code == 200
    refused = client.post("/v1/jobs", json=body, headers=bearer(reader))
    assert "scope is read" in assert_envelope(refused, 403)["message"]
    assert_envelope(client.get("/v1/keys", headers=bearer(writer)), 403)
    assert client.post("/v1/jobs", json=body, headers=bearer(writer)).status_code == 202
    assert client.get("/v1/keys", headers=bearer(admin)).status_code == 200


def test_an_admin_manages_only_its_own_tenants_keys(client, sessions):
    admin = api_key(sessions, "alice", "admin")
    bobs = api_key(sessions, "bob", "write")
    made = client.post("/v1/keys", json={"scope": "read"}, headers=bearer(admin))
    assert made.status_code == 201
    new_key = made.get_json()["key"]
    assert made.get_json()["tenant"] == "alice"
    listed = client.get("/v1/keys", headers=bearer(admin)).get_json()
    assert {row["id"] for row in listed} == {key_id(admin), key_id(new_key)}
    assert all("key" not in row and "secret_sha256" not in row for row in listed)
    assert_envelope(client.get(f"/v1/keys/{key_id(bobs)}", headers=bearer(admin)), 404)
    assert_envelope(client.post(f"/v1/keys/{key_id(bobs)}/revoke", headers=bearer(admin)), 404)
    assert client.get("/v1/datasets", headers=bearer(bobs)).status_code == 200
    revoked = client.post(f"/v1/keys/{key_id(new_key)}/revoke", headers=bearer(admin))
    assert revoked.get_json()["revoked_at"] is not None
    assert_envelope(client.get("/v1/datasets", headers=bearer(new_key)), 401)


@pytest.mark.parametrize(
    "body, field",
    [({"scope": "root"}, "scope"), ({"expires_in_days": 0}, "expires_in_days")],
)
def test_a_bad_key_request_is_a_422_naming_the_field(client, sessions, body, field):
    admin = api_key(sessions, "alice", "admin")
    assert_envelope(client.post("/v1/keys", json=body, headers=bearer(admin)), 422, field)


def access_token(client, key: str, seconds: int = 60) -> str:
    response = client.post("/v1/tokens", json={"expires_in": seconds}, headers=bearer(key))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["access_token"]


def test_an_access_token_opens_gets_only(client, sessions):
    reader = api_key(sessions, "alice", "read")
    token = access_token(client, reader)
    assert client.get(f"/v1/datasets?access_token={token}").status_code == 200
    refused = client.post(f"/v1/jobs/validate?access_token={token}", json={})
    assert_envelope(refused, 401)


def test_a_tampered_expired_or_revoked_token_is_a_401(client, sessions, settings, monkeypatch):
    key = api_key(sessions, "alice", "read")
    token = access_token(client, key, seconds=5)
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert_envelope(client.get(f"/v1/datasets?access_token={tampered}"), 401)
    later = time.time() + 6
    monkeypatch.setattr("service.api.auth.time.time", lambda: later)
    assert (
        "expired"
        in assert_envelope(client.get(f"/v1/datasets?access_token={token}"), 401)["message"]
    )
    monkeypatch.undo()
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    assert main(["keys", "revoke", str(key_id(key))]) == 0
    assert_envelope(client.get(f"/v1/datasets?access_token={token}"), 401)


def test_a_token_needs_a_key(client_with):
    local = client_with(auth="off")
    assert_envelope(local.post("/v1/tokens", json={}), 409)


def test_keys_create_prints_the_key_alone_on_the_last_line(sessions, settings, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    assert main(["keys", "create", "--tenant", "alice", "--scope", "admin", "--expires", "7"]) == 0
    key = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"bpk_\d+_[A-Za-z0-9_-]{43}", key)
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert "alice" in listed and "admin" in listed and key.split("_")[-1] not in listed
    assert main(["keys", "revoke", "424242"]) == 1


def test_keys_create_refuses_a_bad_tenant_name(monkeypatch, settings):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    with pytest.raises(SystemExit):
        main(["keys", "create", "--tenant", "Not A Tenant"])


def test_only_a_hash_of_the_key_is_stored(sessions, write_key):
    with sessions() as session:
        row = session.get(ApiKey, key_id(write_key))
        assert keys.parse_key(write_key)[1] not in (row.secret_sha256, row.description)
        assert row.secret_sha256 == keys.sha256_hex(keys.parse_key(write_key)[1])


def test_auth_off_on_a_public_address_is_refused():
    assert Settings(host="0.0.0.0").exposure_problem() is not None
    assert Settings(host="0.0.0.0", auth="required").exposure_problem() is None
    assert Settings(host="::1").exposure_problem() is None
    assert Settings().exposure_problem() is None
    with pytest.raises(ValueError, match="AUTH"):
        Settings.from_env({"AUTH": "maybe"})


def test_the_api_refuses_to_start_open_to_a_network_without_auth(monkeypatch, capsys):
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("AUTH", "off")
    assert main(["api"]) == 2
    assert "AUTH=off" in capsys.readouterr().err
    assert main(["run"]) == 2


@pytest.mark.parametrize("method", ["put", "delete"])
@pytest.mark.parametrize("alias", ["predict", "evaluate", "infer", "validate", "tokens"])
def test_a_read_key_cannot_touch_an_alias_named_like_a_reading_action(
    client, sessions, method, alias
):
    reader = api_key(sessions, "alice", "read")
    response = client.open(
        f"/v1/models/m/aliases/{alias}",
        method=method.upper(),
        json={"version": 1},
        headers=bearer(reader),
    )
    assert_envelope(response, 403)


def test_a_key_id_no_row_can_have_is_a_401(client):
    key = "bpk_9999999999_" + "A" * 43
    assert_envelope(client.get("/v1/datasets", headers={"X-API-Key": key}), 401)
    token = "bpt_9999999999_1_" + "0" * 64
    assert_envelope(client.get(f"/v1/datasets?access_token={token}"), 401)


def forged_token(sessions, key: str, expires: int, secret: bytes) -> str:
    with sessions() as session:
        stored = session.get(ApiKey, key_id(key)).secret_sha256
    message = f"{key_id(key)}.{expires}".encode()
    signature = hmac.new(secret + bytes.fromhex(stored), message, hashlib.sha256).hexdigest()
    return f"bpt_{key_id(key)}_{expires}_{signature}"


def test_a_copy_of_the_database_cannot_mint_a_token(client, sessions):
    key = api_key(sessions, "alice", "read")
    token = forged_token(sessions, key, int(time.time()) + 60, secret=b"")
    assert_envelope(client.get(f"/v1/datasets?access_token={token}"), 401)


def test_a_token_that_outlives_the_longest_lifetime_is_refused(client, sessions, app):
    key = api_key(sessions, "alice", "read")
    secret = app.extensions["backprop"].signing_secret
    good = forged_token(sessions, key, int(time.time()) + 60, secret)
    assert client.get(f"/v1/datasets?access_token={good}").status_code == 200
    lasting = forged_token(sessions, key, int(time.time()) + 10 * 3600, secret)
    assert_envelope(client.get(f"/v1/datasets?access_token={lasting}"), 401)


def test_an_admin_keys_token_only_reads(client, sessions):
    admin = api_key(sessions, "alice", "admin")
    token = access_token(client, admin)
    assert client.get(f"/v1/datasets?access_token={token}").status_code == 200
    assert_envelope(client.get(f"/v1/keys?access_token={token}"), 403)


def test_the_signing_secret_is_made_once_and_shared(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", auth="required")
    first, second = signing_secret(settings), signing_secret(settings)
    assert first == second and len(first) == 64
    assert settings.secret_key_path().stat().st_mode & 0o777 == 0o600
    assert signing_secret(dataclasses.replace(settings, secret_key="s3cret")) == b"s3cret"


@pytest.mark.parametrize("left", [b"", b"0123abcd"])
def test_an_empty_or_short_secret_file_is_replaced_not_used(tmp_path, left):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", auth="required")
    settings.secret_key_path().write_bytes(left)
    secret = signing_secret(settings)
    assert len(secret) == 64 and secret != left
    assert settings.secret_key_path().read_bytes() == secret


def test_a_truncated_secret_file_does_not_let_a_copy_of_the_database_mint_tokens(
    settings, sessions
):
    settings.secret_key_path().parent.mkdir(parents=True, exist_ok=True)
    settings.secret_key_path().write_bytes(b"")
    client = create_app(settings).test_client()
    key = api_key(sessions, "alice", "read")
    token = forged_token(sessions, key, int(time.time()) + 60, secret=b"")
    assert_envelope(client.get(f"/v1/datasets?access_token={token}"), 401)


def test_processes_racing_to_make_the_secret_all_use_the_winners(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", auth="required")
    settings.secret_key_path().parent.mkdir(parents=True, exist_ok=True)
    with multiprocessing.get_context("fork").Pool(6) as pool:
        secrets_made = pool.map(signing_secret, [settings] * 24)
    assert set(secrets_made) == {settings.secret_key_path().read_bytes()}
    assert len(secrets_made[0]) == 64
    assert [path.name for path in tmp_path.iterdir()] == ["secret.key"]  # no temporary file left
