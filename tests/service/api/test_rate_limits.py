"""Request rates: over a budget a 429 with ``Retry-After`` and the envelope; predictions and
everything else counted apart; per key with AUTH=required, per address with AUTH=off; one
budget shared through Redis by every API process (each spending leased shares of it), and
counted in memory while Redis is down.

Budgets are "N/minute" so that no window ends during a test."""

import dataclasses
import secrets
import threading
import time

import pytest

from service.api.app import create_app
from service.api.limits import ThreadlessMemoryStorage
from tests.factories import api_key, assert_envelope, bearer, free_port
from tests.redis_commands import sent_on_this_thread

XOR_ROWS = {"instances": [[0, 1]]}
INFER_BODY = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [0, 1]}]}


def from_address(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def assert_too_many(response, setting: str, limit: str) -> dict:
    error = assert_envelope(response, 429)
    assert error["code"] == "too_many_requests"
    assert error["message"] == f"Rate limit {limit} ({setting}) exceeded."
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    return error


def test_a_burst_over_the_limit_is_a_429_with_retry_after_and_the_envelope(client_with):
    client = client_with(rate_limit="3/minute")
    assert [client.get("/v1/datasets").status_code for _ in range(3)] == [200] * 3
    assert_too_many(client.get("/v1/datasets"), "RATE_LIMIT", "3 per 1 minute")
    # Another route draws on the same budget.
    assert_too_many(client.get("/v1/jobs"), "RATE_LIMIT", "3 per 1 minute")


def test_v2_answers_the_protocols_error_body(client_with):
    client = client_with(predict_rate_limit="1/minute")
    assert client.post("/v2/models/absent/infer", json=INFER_BODY).status_code == 404
    response = client.post("/v2/models/absent/infer", json=INFER_BODY)
    assert response.status_code == 429
    assert response.get_json() == {
        "error": "Rate limit 1 per 1 minute (PREDICT_RATE_LIMIT) exceeded."
    }
    assert int(response.headers["Retry-After"]) >= 1


def test_predictions_and_everything_else_have_separate_budgets(client_with):
    client = client_with(rate_limit="2/minute", predict_rate_limit="3/minute")
    for _ in range(2):
        assert client.get("/v1/models").status_code == 200
    assert_too_many(client.get("/v1/models"), "RATE_LIMIT", "2 per 1 minute")
    # Evaluating is not predicting: it draws on the general budget.
    evaluate = client.post("/v1/models/1/evaluate", json={"builtin": "xor"})
    assert_too_many(evaluate, "RATE_LIMIT", "2 per 1 minute")

    predictions = [client.post("/v1/models/1/predict", json=XOR_ROWS) for _ in range(2)]
    assert [response.status_code for response in predictions] == [404, 404]  # no model 1
    assert client.post("/v2/models/1/infer", json=INFER_BODY).status_code == 404
    predict = client.post("/v1/models/1/predict", json=XOR_ROWS)
    assert_too_many(predict, "PREDICT_RATE_LIMIT", "3 per 1 minute")


def test_exhausted_predictions_leave_everything_else_answering(client_with):
    client = client_with(rate_limit="5/minute", predict_rate_limit="1/minute")
    client.post("/v1/models/1/predict", json=XOR_ROWS)
    predict = client.post("/v1/models/1/predict", json=XOR_ROWS)
    assert_too_many(predict, "PREDICT_RATE_LIMIT", "1 per 1 minute")
    assert client.get("/v1/datasets").status_code == 200
    assert client.post("/v1/datasets", json={"builtin": "xor"}).status_code == 201


def test_probes_metrics_and_documents_are_not_limited(client_with):
    client = client_with(rate_limit="1/minute", predict_rate_limit="1/minute")
    client.get("/v1/datasets")
    assert client.get("/v1/datasets").status_code == 429
    for path in ("/health/live", "/v2/health/live", "/openapi.json", "/metrics") * 3:
        assert client.get(path).status_code != 429, path


def test_with_auth_required_each_key_has_its_own_budget(client_with, sessions):
    client = client_with(auth="required", rate_limit="2/minute")
    first, second = (bearer(api_key(sessions, "acme")) for _ in range(2))
    for _ in range(2):
        assert client.get("/v1/datasets", headers=first).status_code == 200
    assert_too_many(client.get("/v1/datasets", headers=first), "RATE_LIMIT", "2 per 1 minute")
    # The same tenant and the same address, another key: its own budget.
    assert client.get("/v1/datasets", headers=second).status_code == 200


def test_with_auth_off_each_address_has_its_own_budget(client_with):
    client = client_with(rate_limit="1/minute")
    assert client.get("/v1/datasets", **from_address("10.0.0.1")).status_code == 200
    limited = client.get("/v1/datasets", **from_address("10.0.0.1"))
    assert_too_many(limited, "RATE_LIMIT", "1 per 1 minute")
    assert client.get("/v1/datasets", **from_address("10.0.0.2")).status_code == 200


def test_with_redis_as_the_broker_every_api_process_shares_one_budget(client_with, redis_url):
    first, second = (client_with(broker_url=redis_url, rate_limit="3/minute") for _ in range(2))
    caller = from_address(f"test-{secrets.token_hex(4)}")  # a budget no other run has used
    assert first.get("/v1/datasets", **caller).status_code == 200
    assert second.get("/v1/datasets", **caller).status_code == 200
    assert first.get("/v1/datasets", **caller).status_code == 200
    assert_too_many(second.get("/v1/datasets", **caller), "RATE_LIMIT", "3 per 1 minute")
    assert_too_many(first.get("/v1/datasets", **caller), "RATE_LIMIT", "3 per 1 minute")


def test_processes_spend_leased_shares_and_never_answer_over_the_limit(client_with, redis_url):
    first, second = (client_with(broker_url=redis_url, rate_limit="200/minute") for _ in range(2))
    caller = from_address(f"test-{secrets.token_hex(4)}")
    answers = [
        client.get("/v1/datasets", **caller).status_code
        for _ in range(110)
        for client in (first, second)
    ]
    assert set(answers) == {200, 429}
    # Shares of 2: at most (processes - 1) x (share - 1) requests refused early, none over.
    assert 199 <= answers.count(200) <= 200
    assert answers.index(429) == answers.count(200)  # every answer after the first refusal
    assert set(answers[answers.index(429) :]) == {429}


def test_threads_of_one_process_spend_its_leases_exactly(client_with, redis_url):
    app = client_with(broker_url=redis_url, predict_rate_limit="200/minute").application
    caller = from_address(f"test-{secrets.token_hex(4)}")
    answers = []

    def predict_60_times():
        client = app.test_client()
        for _ in range(60):
            answers.append(client.post("/v1/models/0/predict", json=XOR_ROWS, **caller).status_code)

    threads = [threading.Thread(target=predict_60_times) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 240 and answers.count(429) == 40  # a 404 is a prediction counted


def test_a_window_refused_in_redis_is_refused_from_memory_until_it_ends(
    client_with, redis_url, monkeypatch
):
    client = client_with(broker_url=redis_url, rate_limit="3/minute")
    caller = from_address(f"test-{secrets.token_hex(4)}")
    assert [client.get("/v1/datasets", **caller).status_code for _ in range(3)] == [200] * 3
    with sent_on_this_thread(monkeypatch) as sent:
        assert_too_many(client.get("/v1/datasets", **caller), "RATE_LIMIT", "3 per 1 minute")
        assert_too_many(client.get("/v1/datasets", **caller), "RATE_LIMIT", "3 per 1 minute")
    assert sent == [["EVALSHA"]]


def test_while_redis_is_unreachable_requests_are_answered_and_counted_in_memory(client_with):
    client = client_with(
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        broker_timeout_seconds=0.5,
        rate_limit="2/minute",
    )
    assert [client.get("/v1/datasets").status_code for _ in range(2)] == [200, 200]
    assert_too_many(client.get("/v1/datasets"), "RATE_LIMIT", "2 per 1 minute")


def test_off_turns_a_budget_off(client_with):
    client = client_with(rate_limit="off", predict_rate_limit="1/minute")
    assert {client.get("/v1/datasets").status_code for _ in range(5)} == {200}
    client.post("/v1/models/1/predict", json=XOR_ROWS)
    assert client.post("/v1/models/1/predict", json=XOR_ROWS).status_code == 429


def test_both_budgets_off_install_no_limiter(settings, sessions):
    app = create_app(dataclasses.replace(settings, rate_limit="off", predict_rate_limit="off"))
    assert "rate_limits" not in app.extensions


@pytest.mark.parametrize("setting", ["rate_limit", "predict_rate_limit"])
def test_a_limit_that_does_not_parse_stops_the_app_naming_its_setting(settings, setting):
    with pytest.raises(ValueError, match=f"{setting.upper()}='lots'"):
        create_app(dataclasses.replace(settings, **{setting: "lots"}))


def mint(client, headers: dict) -> object:
    return client.post("/v1/keys", json={"scope": "admin"}, headers=headers)


def test_a_chain_of_minted_keys_spends_one_budget(client_with, sessions):
    client = client_with(auth="required", rate_limit="5/minute")
    headers = bearer(api_key(sessions, "acme", "admin"))
    successes = 0
    for _ in range(12):  # each new key mints the next, as the review did
        response = mint(client, headers)
        if response.status_code != 201:
            assert_too_many(response, "RATE_LIMIT", "5 per 1 minute")
            break
        successes += 1
        headers = bearer(response.get_json()["key"])
    assert successes == 5
    # The operator's own keys (the CLI's) keep budgets of their own.
    assert (
        client.get("/v1/keys", headers=bearer(api_key(sessions, "acme", "admin"))).status_code
        == 200
    )


def test_a_tenant_holds_at_most_max_keys_per_tenant_live_keys(client_with, sessions):
    client = client_with(auth="required", max_keys_per_tenant=3)
    admin = bearer(api_key(sessions, "acme", "admin"))
    minted = [mint(client, admin) for _ in range(3)]
    assert [response.status_code for response in minted] == [201, 201, 409]
    assert "MAX_KEYS_PER_TENANT" in assert_envelope(minted[-1], 409)["message"]
    revoked = minted[0].get_json()["id"]
    assert client.post(f"/v1/keys/{revoked}/revoke", headers=admin).status_code == 200
    assert mint(client, admin).status_code == 201
    # Another tenant's keys are its own count.
    assert mint(client, bearer(api_key(sessions, "other", "admin"))).status_code == 201


def test_counting_in_memory_starts_no_thread(client_with, monkeypatch):
    """limits' memory storage started a timer thread on a hit every 10 ms or so."""
    client = client_with(rate_limit="1000/minute")
    started = []

    class CountingTimer(threading.Timer):
        def start(self):
            started.append(self)
            super().start()

    monkeypatch.setattr(threading, "Timer", CountingTimer)
    for _ in range(3):
        time.sleep(0.05)  # the last timer, had one started, would have run by now
        assert client.get("/v1/datasets").status_code == 200
    assert started == []


def test_counts_of_callers_gone_are_swept_without_a_thread():
    storage = ThreadlessMemoryStorage()
    storage.incr("gone", 60)
    storage.expirations["gone"] = time.time() - 1  # its window has ended; no one hits it again
    storage.swept_at -= ThreadlessMemoryStorage.SWEEP_SECONDS
    storage.incr("here", 60)
    assert "gone" not in storage.storage
    assert storage.get("here") == 1
