"""With Redis as the broker, keys required, the prediction log on and a canary split on the
alias, a prediction costs at most one Redis round trip: the rate limits' windows counted in one
script, the registry generation pushed (service/generation.py); none with the rate limits off.
Counted on the real Redis by wrapping the client's connections."""

import dataclasses

import pytest

from tests.factories import api_key, bearer, job_body
from tests.redis_commands import sent_on_this_thread
from worker.training import run_training

ROWS = {"instances": [[0, 1]]}


@pytest.fixture
def settings(settings, redis_url):
    return dataclasses.replace(
        settings,
        broker_url=redis_url,
        auth="required",
        predict_rate_limit="100000/second;1000000/minute",
        rate_limit="100000/second;1000000/minute",
    )


@pytest.fixture
def alias_path(client, sessions, settings) -> str:
    """The predict path of ``xor@production``: a canary split over two versions of an XOR model
    trained by the worker's own function."""
    headers = bearer(api_key(sessions, "default", "admin"))
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}, headers=headers)
    body = job_body(dataset_id.get_json()["id"], epochs=5) | {"model_name": "xor"}
    for _ in range(2):
        job_id = client.post("/v1/jobs", json=body, headers=headers).get_json()["id"]
        run_training(sessions, job_id, settings)
    split = {"versions": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
    put = client.put("/v1/models/xor/aliases/production", json=split, headers=headers)
    assert put.status_code == 200, put.get_json()
    return "/v1/models/xor@production/predict"


def round_trips_of_predictions(client, headers, path, monkeypatch) -> list[list[str]]:
    """The Redis round trips of three predictions made after a first (which subscribes to the
    generation and loads the script)."""
    assert client.post(path, json=ROWS, headers=headers).status_code == 200
    with sent_on_this_thread(monkeypatch) as sent:
        for _ in range(3):
            assert client.post(path, json=ROWS, headers=headers).status_code == 200
    return sent


def test_a_prediction_costs_no_round_trip_with_rate_limits_and_keys_while_its_lease_lasts(
    client, sessions, alias_path, monkeypatch
):
    headers = bearer(api_key(sessions, "default"))
    sent = round_trips_of_predictions(client, headers, alias_path, monkeypatch)
    assert sent == []  # the first prediction leased 1,000 of each window's budget


def test_a_budget_too_small_to_share_costs_one_round_trip_per_prediction(
    client_with, sessions, alias_path, monkeypatch
):
    client = client_with(predict_rate_limit="90/minute")  # under LEASE_DIVISOR: one at a time
    headers = bearer(api_key(sessions, "default"))
    sent = round_trips_of_predictions(client, headers, alias_path, monkeypatch)
    assert sent == [["EVALSHA"]] * 3


def test_a_prediction_costs_no_round_trip_without_rate_limits(
    client_with, sessions, alias_path, monkeypatch
):
    client = client_with(rate_limit="off", predict_rate_limit="off")
    headers = bearer(api_key(sessions, "default"))
    sent = round_trips_of_predictions(client, headers, alias_path, monkeypatch)
    assert sent == []
