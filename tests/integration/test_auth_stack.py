"""The stack with AUTH=required (``secured``: PostgreSQL + Redis, the API with two processes):
keys made by `backprop keys create`, a job trained and served for its tenant only, the event
stream read with an access token, and a revocation by `backprop keys revoke` refused by every
process at once; examples/ with and without a key (here, so that they need no stack of their own).
"""

import subprocess

import requests

from tests.factories import job_body
from tests.integration.conftest import BACKPROP, Stack
from tests.integration.test_examples import run_example, succeeded
from tests.integration.test_jobs_api import read_events

# Enough requests that both API processes answer some (connections are not kept alive).
REQUESTS_PER_CHECK = 12


def make_key(env: dict, tenant: str, scope: str = "write") -> str:
    done = subprocess.run(
        [BACKPROP, "keys", "create", "--tenant", tenant, "--scope", scope],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()[-1]


def statuses(stack: Stack, path: str, key: str) -> set[int]:
    headers = {"Authorization": f"Bearer {key}", "Connection": "close"}
    return {
        requests.get(stack.base_url + path, headers=headers, timeout=30).status_code
        for _ in range(REQUESTS_PER_CHECK)
    }


def test_a_tenant_trains_and_serves_its_own_model_and_a_revoked_key_stops_at_once(secured):
    stack, env = secured
    alice, bob = make_key(env, "alice"), make_key(env, "bob")
    assert requests.get(stack.base_url + "/v1/datasets", timeout=30).status_code == 401
    headers = {"Authorization": f"Bearer {alice}"}
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "xor"}, headers=headers)
    job = stack.create(
        "/v1/jobs",
        202,
        headers=headers,
        json={**job_body(dataset["id"]), "model_name": "xor"},
    )
    token = stack.create("/v1/tokens", 201, json={"expires_in": 120}, headers=headers)
    stream = requests.get(
        f"{stack.base_url}/v1/jobs/{job['id']}/events",
        params={"access_token": token["access_token"]},
        stream=True,
        timeout=60,
    )
    assert stream.status_code == 200, stream.text
    with stream:
        events = list(read_events(stream))
    assert events[-1]["data"]["status"] == "succeeded"

    rows = {"instances": [[0, 0], [0, 1], [1, 0], [1, 1]]}
    predicted = requests.post(
        f"{stack.base_url}/v1/models/xor/predict", json=rows, headers=headers, timeout=30
    )
    assert predicted.json()["predictions"] == [0, 1, 1, 0]
    as_bob = requests.post(
        f"{stack.base_url}/v1/models/xor/predict",
        json=rows,
        headers={"Authorization": f"Bearer {bob}"},
        timeout=30,
    )
    assert as_bob.status_code == 404

    assert statuses(stack, "/v1/models", alice) == {200}
    key_id = alice.split("_")[1]
    subprocess.run([BACKPROP, "keys", "revoke", key_id], env=env, check=True, capture_output=True)
    assert statuses(stack, "/v1/models", alice) == {401}
    assert statuses(stack, "/v1/models", bob) == {200}


def test_the_examples_send_the_key_and_say_when_it_is_missing(secured):
    stack, env = secured
    key = make_key(env, "examples")
    assert succeeded("xor.py", stack.base_url, api_key=key).endswith("ok: XOR learned\n")
    assert succeeded("curl.sh", stack.base_url, api_key=key).endswith("ok\n")
    for name in ("xor.py", "curl.sh"):
        refused = run_example(name, stack.base_url)
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: "), refused.stderr
        assert "401" in refused.stderr
        assert refused.stderr.endswith(" (set BACKPROP_API_KEY to a key)\n")
