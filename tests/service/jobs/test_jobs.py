"""POST /v1/jobs and /v1/jobs/validate: specs checked against the data before anything is queued."""

import string
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest

from service.api.app import create_app
from service.db import job_requests
from service.db.models import TrainingJob
from service.jobs.cancellation import cancel_job
from service.jobs.specs import SERVICE_FIELD_CHECKS, stored_specs
from service.vocabulary import SERVICE_TRAINING_FIELDS, JobStatus
from tests.factories import XOR_NETWORK, assert_envelope, job_body


def test_every_service_training_field_is_checked_by_the_api():
    """The worker strips exactly the fields the API checks before model_core sees the spec."""
    assert set(SERVICE_FIELD_CHECKS) == set(SERVICE_TRAINING_FIELDS)


@pytest.fixture
def xor_id(client) -> int:
    return client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]


def test_submit_answers_202_with_location_and_queues_one_message(client, xor_id, queued_messages):
    response = client.post("/v1/jobs", json=job_body(xor_id, epochs=50))
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"].endswith(f"/v1/jobs/{job['id']}")
    assert (job["status"], job["attempt"], job["epoch"], job["epochs"]) == ("queued", 0, 0, 50)
    assert job["network"]["loss"] == "cross_entropy"
    assert isinstance(job["training"]["seed"], int)
    assert queued_messages() == 1
    assert client.get(response.headers["Location"]).get_json() == job


def test_the_given_seed_is_kept(client, xor_id):
    body = job_body(xor_id)
    body["training"]["seed"] = 1234
    assert client.post("/v1/jobs", json=body).get_json()["training"]["seed"] == 1234


BAD_SPECS = {
    "unknown activation": (
        {"layers": [{"units": 4, "activation": "sigmod"}, {"units": 2, "activation": "softmax"}]},
        "network.layers[0].activation",
    ),
    "wrong output width": (
        {"layers": [{"units": 4, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]},
        "network.layers[1].units",
    ),
    "loss for another output": (
        {
            "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "softmax"}],
            "loss": "binary_cross_entropy",
        },
        "network.loss",
    ),
    "no layers": ({"layers": []}, "network.layers"),
}


@pytest.mark.parametrize("case", BAD_SPECS, ids=list(BAD_SPECS))
def test_bad_spec_is_422_keyed_by_path_and_nothing_is_queued(
    client, xor_id, row_counts, queued_messages, case
):
    network, path = BAD_SPECS[case]
    assert_envelope(client.post("/v1/jobs", json=job_body(xor_id, network=network)), 422, path)
    assert row_counts()["training_jobs"] == 0
    assert queued_messages() == 0


def test_bad_training_spec_is_422(client, xor_id, row_counts):
    body = {"dataset_id": xor_id, "network": XOR_NETWORK, "training": {"epochs": -1}}
    assert_envelope(client.post("/v1/jobs", json=body), 422, "training.epochs")
    assert row_counts()["training_jobs"] == 0


def test_regression_loss_on_classes_is_422(client):
    body = {"task": "regression", "features": [[0], [1], [2]], "targets": [0.0, 1.0, 2.0]}
    dataset_id = client.post("/v1/datasets", json=body).get_json()["id"]
    network = {"layers": [{"units": 1, "activation": "sigmoid"}], "loss": "binary_cross_entropy"}
    assert_envelope(client.post("/v1/jobs", json=job_body(dataset_id, network=network)), 422)


BAD_BODIES = {
    "dataset id as string": ({"dataset_id": "1", "network": XOR_NETWORK}, "dataset_id"),
    "network not an object": ({"dataset_id": 1, "network": [1]}, "network"),
    "missing network": ({"dataset_id": 1}, "network"),
    "unknown dataset": ({"dataset_id": 999, "network": XOR_NETWORK}, "dataset_id"),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_bad_body_is_422(client, xor_id, row_counts, case):
    body, field = BAD_BODIES[case]
    assert_envelope(client.post("/v1/jobs", json=body), 422, field)
    assert row_counts()["training_jobs"] == 0


def test_malformed_json_is_400(client, row_counts):
    response = client.post("/v1/jobs", data="{", content_type="application/json")
    assert_envelope(response, 400, "json")
    assert row_counts()["training_jobs"] == 0


def test_validate_reports_defaults_and_warnings_without_queuing(
    client, xor_id, row_counts, queued_messages
):
    body = job_body(xor_id)
    body["training"] = {"batch_size": 64}
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert report["valid"] is True and report["errors"] == {}
    assert report["training"]["epochs"] == 100
    assert any("batch_size" in warning for warning in report["warnings"])
    assert row_counts()["training_jobs"] == 0
    assert queued_messages() == 0


def test_validate_reports_errors_by_path(client, xor_id):
    network = BAD_SPECS["unknown activation"][0]
    report = client.post("/v1/jobs/validate", json=job_body(xor_id, network=network)).get_json()
    assert report["valid"] is False
    assert "network.layers[0].activation" in report["errors"]


NEW_TRAINING_FIELDS = {
    "dropout on the output layer": (
        {
            "layers": [
                {"units": 4, "activation": "tanh", "dropout": 0.2},
                {"units": 2, "activation": "softmax", "dropout": 0.1},
            ]
        },
        {},
        "network.layers[1].dropout",
    ),
    "dropout of 1": (
        {"layers": [{"units": 4, "activation": "tanh", "dropout": 1}, XOR_NETWORK["layers"][1]]},
        {},
        "network.layers[0].dropout",
    ),
    "decay and a schedule": (
        XOR_NETWORK,
        {
            "optimizer": {"name": "sgd", "decay": 0.1},
            "schedule": {"name": "exponential", "gamma": 0.9},
        },
        "training.schedule",
    ),
    "a schedule's setting": (
        XOR_NETWORK,
        {"schedule": {"name": "step"}},
        "training.schedule.step_size",
    ),
    "clip_norm": (XOR_NETWORK, {"clip_norm": -1}, "training.clip_norm"),
    "warmup_epochs": (XOR_NETWORK, {"warmup_epochs": "3"}, "training.warmup_epochs"),
}


@pytest.mark.parametrize("case", NEW_TRAINING_FIELDS, ids=list(NEW_TRAINING_FIELDS))
def test_dropout_schedules_and_clipping_are_checked_by_path(client, xor_id, row_counts, case):
    network, training, path = NEW_TRAINING_FIELDS[case]
    body = {"dataset_id": xor_id, "network": network, "training": training}
    assert_envelope(client.post("/v1/jobs", json=body), 422, path)
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert report["valid"] is False and path in report["errors"]
    assert row_counts()["training_jobs"] == 0


def test_validate_fills_in_the_schedule_warm_up_clipping_and_dropout(client, xor_id):
    network = {
        "layers": [{"units": 4, "activation": "tanh", "dropout": 0.25}, XOR_NETWORK["layers"][1]]
    }
    training = {"schedule": {"name": "plateau", "patience": 3}, "warmup_epochs": 5, "clip_norm": 2}
    body = {"dataset_id": xor_id, "network": network, "training": training}
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert report["valid"] is True, report
    assert [layer["dropout"] for layer in report["network"]["layers"]] == [0.25, 0.0]
    assert report["training"]["schedule"] == {
        "name": "plateau",
        "factor": 0.1,
        "patience": 3,
        "threshold": 1e-4,
        "min_lr": 0.0,
    }
    assert (report["training"]["warmup_epochs"], report["training"]["clip_norm"]) == (5, 2.0)


def test_validate_unknown_dataset(client):
    report = client.post("/v1/jobs/validate", json=job_body(999)).get_json()
    assert report["errors"] == {"dataset_id": ["no data set with id 999"]}


def test_unknown_job_is_404(client):
    assert_envelope(client.get("/v1/jobs/999"), 404)
    assert_envelope(client.get("/v1/jobs/999/epochs"), 404)


def test_epochs_query_is_checked(client, xor_id):
    job_id = client.post("/v1/jobs", json=job_body(xor_id)).get_json()["id"]
    assert client.get(f"/v1/jobs/{job_id}/epochs").get_json() == []
    assert_envelope(client.get(f"/v1/jobs/{job_id}/epochs?after=-1"), 422, "after")
    assert_envelope(client.get(f"/v1/jobs/{job_id}/epochs?after=x"), 422, "after")


def test_a_published_job_is_marked_dispatched(client, xor_id, sessions):
    job_id = client.post("/v1/jobs", json=job_body(xor_id)).get_json()["id"]
    with sessions() as session:
        assert session.get(TrainingJob, job_id).dispatched_at is not None


def test_an_unreachable_broker_still_accepts_the_job_and_leaves_it_to_the_dispatcher(
    xor_id, settings, sessions
):
    down = replace(settings, broker_url="redis://127.0.0.1:1/0", broker_timeout_seconds=0.2)
    response = create_app(down).test_client().post("/v1/jobs", json=job_body(xor_id))
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["status"] == "queued"
    with sessions() as session:
        job = session.get(TrainingJob, response.get_json()["id"])
        assert (job.status, job.dispatched_at, job.error) == (JobStatus.QUEUED, None, None)


def test_jobs_list_is_paginated(client, xor_id):
    for _ in range(3):
        client.post("/v1/jobs", json=job_body(xor_id))
    assert len(client.get("/v1/jobs?page_size=2").get_json()) == 2


def test_initial_weights_are_stored_apart_and_not_echoed(client, xor_id, sessions):
    weights = [
        {"W": [[0.1] * 4, [0.2] * 4], "b": [0.0] * 4},
        {"W": [[0.3] * 2] * 4, "b": [0.0] * 2},
    ]
    body = job_body(xor_id, network={**XOR_NETWORK, "initial_weights": weights})
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert report["valid"] and "initial_weights" not in report["network"]
    job = client.post("/v1/jobs", json=body).get_json()
    assert "initial_weights" not in job["network"]
    with sessions() as session:
        stored = stored_specs(session.get(TrainingJob, job["id"])).network["initial_weights"]
    assert stored[1]["W"][0] == [0.3, 0.3]


def set_status(sessions, job_id: int, status: JobStatus) -> None:
    """Put a job in ``status`` the way a worker would leave it."""
    with sessions() as session:
        session.get(TrainingJob, job_id).status = status
        session.commit()


def test_cancelling_a_queued_job_ends_it_at_once(client, xor_id, sessions):
    job_id = client.post("/v1/jobs", json=job_body(xor_id)).get_json()["id"]
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    job = response.get_json()
    assert job["status"] == "cancelled" and job["finished_at"] is not None
    assert client.get(f"/v1/jobs/{job_id}").get_json() == job


def test_cancelling_a_running_job_asks_its_worker_to_stop(client, xor_id, sessions):
    job_id = client.post("/v1/jobs", json=job_body(xor_id)).get_json()["id"]
    set_status(sessions, job_id, JobStatus.RUNNING)
    for _ in range(2):
        job = client.post(f"/v1/jobs/{job_id}/cancel").get_json()
        assert (job["status"], job["cancel_requested"]) == ("running", True)


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_cancelling_a_finished_job_is_409(client, xor_id, sessions, status):
    job_id = client.post("/v1/jobs", json=job_body(xor_id)).get_json()["id"]
    set_status(sessions, job_id, status)
    error = assert_envelope(client.post(f"/v1/jobs/{job_id}/cancel"), 409)
    assert error["code"] == "conflict" and status.value in error["message"]
    job = client.get(f"/v1/jobs/{job_id}").get_json()
    assert (job["status"], job["cancel_requested"]) == (status.value, False)


def test_cancelling_an_unknown_job_is_404(client):
    assert_envelope(client.post("/v1/jobs/999/cancel"), 404)


def test_a_cancel_racing_the_claim_asks_the_running_job_to_stop(client, xor_id, sessions):
    job_id = client.post("/v1/jobs", json=job_body(xor_id)).get_json()["id"]
    with sessions() as session:
        job = session.get(TrainingJob, job_id)  # read while queued...
        set_status(sessions, job_id, JobStatus.RUNNING)  # ...claimed before the cancel
        job = cancel_job(session, job)
        assert (job.status, job.cancel_requested) == (JobStatus.RUNNING, True)


def test_max_seconds_is_checked_and_kept_with_the_job(client, xor_id):
    body = job_body(xor_id)
    body["training"]["max_seconds"] = 2.5
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert report["valid"] and report["training"]["max_seconds"] == 2.5
    job = client.post("/v1/jobs", json=body).get_json()
    assert job["training"]["max_seconds"] == 2.5
    assert job["training"]["epochs"] == 300 and job["training"]["seed"] == 1


@pytest.mark.parametrize("max_seconds", [0, -1, "10", True, None, 12 * 3600 + 1])
def test_max_seconds_out_of_range_is_422(client, xor_id, row_counts, max_seconds):
    body = job_body(xor_id)
    body["training"]["max_seconds"] = max_seconds
    assert_envelope(client.post("/v1/jobs", json=body), 422, "training.max_seconds")
    assert row_counts()["training_jobs"] == 0
    report = client.post("/v1/jobs/validate", json=body).get_json()
    assert list(report["errors"]) == ["training.max_seconds"]


def test_max_seconds_up_to_the_configured_limit(xor_id, settings):
    client = create_app(replace(settings, max_job_seconds=60)).test_client()
    body = job_body(xor_id)
    body["training"]["max_seconds"] = 60
    assert client.post("/v1/jobs", json=body).status_code == 202
    body["training"]["max_seconds"] = 61
    error = assert_envelope(client.post("/v1/jobs", json=body), 422, "training.max_seconds")
    assert "60" in error["message"]


def submit_with_key(client, body: dict, key: str):
    return client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})


def test_the_same_key_and_body_replay_the_first_job(client, xor_id, row_counts, queued_messages):
    first = submit_with_key(client, job_body(xor_id), "order-42")
    again = submit_with_key(client, job_body(xor_id), "order-42")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert row_counts()["training_jobs"] == 1
    assert queued_messages() == 1


def test_the_same_key_with_another_body_is_422_naming_the_header(client, xor_id, row_counts):
    assert submit_with_key(client, job_body(xor_id, epochs=10), "order-42").status_code == 202
    response = submit_with_key(client, job_body(xor_id, epochs=11), "order-42")
    assert "different request body" in assert_envelope(response, 422, "Idempotency-Key")["message"]
    assert row_counts()["training_jobs"] == 1


def test_other_keys_and_no_key_create_new_jobs(client, xor_id, row_counts):
    for key in ("a", "b"):
        submit_with_key(client, job_body(xor_id), key)
    client.post("/v1/jobs", json=job_body(xor_id))
    client.post("/v1/jobs", json=job_body(xor_id))
    assert row_counts()["training_jobs"] == 4


def test_a_key_older_than_its_lifetime_names_a_new_job(client, xor_id, sessions, settings):
    first = submit_with_key(client, job_body(xor_id), "order-42").get_json()
    with sessions() as session:
        session.get(TrainingJob, first["id"]).created_at -= timedelta(
            seconds=settings.idempotency_ttl_seconds + 1
        )
        session.commit()
    second = submit_with_key(client, job_body(xor_id, epochs=7), "order-42")
    assert second.status_code == 202 and "Idempotent-Replayed" not in second.headers
    assert second.get_json()["id"] != first["id"]
    with sessions() as session:
        assert session.get(TrainingJob, first["id"]).idempotency_key is None
        assert session.get(TrainingJob, second.get_json()["id"]).idempotency_key == "order-42"
    assert submit_with_key(client, job_body(xor_id, epochs=7), "order-42").get_json() == (
        second.get_json()
    )


BAD_KEYS = {"too long": "k" * 201, "empty": "", "not ASCII": "cl\xe9", "control": "a\x7fb"}


@pytest.mark.parametrize("case", BAD_KEYS, ids=list(BAD_KEYS))
def test_a_bad_key_is_422(client, xor_id, row_counts, case):
    assert_envelope(
        submit_with_key(client, job_body(xor_id), BAD_KEYS[case]), 422, "Idempotency-Key"
    )
    assert row_counts()["training_jobs"] == 0


def test_a_key_of_200_printable_characters_is_accepted(client, xor_id):
    key = (string.printable[:95] * 3)[:200]
    assert submit_with_key(client, job_body(xor_id), key).status_code == 202


def test_concurrent_requests_with_one_key_create_one_job(app, xor_id, row_counts):
    def submit(_):
        response = submit_with_key(app.test_client(), job_body(xor_id), "burst")
        return response.status_code, response.get_json()["id"], response.headers

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, range(16)))
    assert {(status, job_id) for status, job_id, _ in results} == {(202, results[0][1])}
    assert sum("Idempotent-Replayed" not in headers for *_, headers in results) == 1
    assert row_counts()["training_jobs"] == 1


def test_losing_the_race_for_a_key_returns_the_winner(client, xor_id, monkeypatch):
    winner = submit_with_key(client, job_body(xor_id), "race").get_json()
    # The loser looked the key up before the winner committed: it finds nothing, then inserts.
    monkeypatch.setattr(job_requests, "find_job_by_key", lookup_after_first_miss())
    response = submit_with_key(client, job_body(xor_id), "race")
    assert response.headers["Idempotent-Replayed"] == "true"
    assert response.get_json()["id"] == winner["id"]


def lookup_after_first_miss():
    """``find_job_by_key`` finding nothing the first time it is called."""
    real = job_requests.find_job_by_key
    calls = []

    def find(*args):
        calls.append(args)
        return None if len(calls) == 1 else real(*args)

    return find


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("checkpoint_every_epochs", 0),
        ("checkpoint_every_epochs", 2.5),
        ("checkpoint_every_seconds", 0),
        ("checkpoint_every_seconds", "30"),
    ],
)
def test_bad_checkpoint_interval_is_422(client, xor_id, row_counts, field, value):
    body = job_body(xor_id)
    body["training"][field] = value
    assert_envelope(client.post("/v1/jobs", json=body), 422, f"training.{field}")
    assert row_counts()["training_jobs"] == 0


def test_checkpoint_intervals_are_kept_with_the_job(client, xor_id):
    body = job_body(xor_id)
    body["training"].update(checkpoint_every_epochs=5, checkpoint_every_seconds=2.5)
    job = client.post("/v1/jobs", json=body).get_json()
    assert job["training"]["checkpoint_every_epochs"] == 5
    assert job["training"]["checkpoint_every_seconds"] == 2.5
