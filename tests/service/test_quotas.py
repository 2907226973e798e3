"""Per-tenant quotas, on SQLite and PostgreSQL: queued + running jobs (429 with ``Retry-After``)
and stored bytes (422), each naming its quota, nothing written on refusal; an idempotent retry
is never refused; another tenant's holdings do not count."""

import pytest

from service.datasets.ingest import dataset_from_sample
from service.db.models import TrainingJob
from service.quotas import JOBS_RETRY_AFTER_SECONDS
from service.vocabulary import JobStatus
from tests.conftest import BACKENDS
from tests.factories import api_key, assert_envelope, bearer, job_body
from tests.service.datasets.test_uploads import post_file
from worker.training import run_training

XOR_BYTES = dataset_from_sample("xor", None).stored_bytes


pytestmark = pytest.mark.parametrize("sessions", BACKENDS, indirect=True)


def upload_xor(client, **kwargs) -> int:
    response = client.post("/v1/datasets", json={"builtin": "xor"}, **kwargs)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def submit(client, dataset_id: int, **kwargs):
    return client.post("/v1/jobs", json=job_body(dataset_id, epochs=5), **kwargs)


def test_an_upload_over_the_storage_quota_is_a_422_and_stores_nothing(client_with, row_counts):
    client = client_with(quota_stored_bytes=2 * XOR_BYTES - 1)
    upload_xor(client)
    before = row_counts()
    response = client.post("/v1/datasets", json={"builtin": "xor"})
    error = assert_envelope(response, 422, "quota.stored_bytes")
    assert "QUOTA_STORED_BYTES" in error["message"] and str(XOR_BYTES) in error["message"]
    assert row_counts() == before


@pytest.mark.parametrize(
    "data", [b"a,y\n1,0\n2,1\n", b"\xff\xfe not CSV"], ids=["valid", "not parsed"]
)
def test_an_upload_while_storage_is_full_is_refused_before_its_file_is_read(
    client_with, row_counts, data
):
    client = client_with(quota_stored_bytes=XOR_BYTES)
    upload_xor(client)
    before = row_counts()
    # A file that is not CSV is refused by the quota too: the file was never parsed.
    response = post_file(client, data, "data.csv", target="y")
    error = assert_envelope(response, 422, "quota.stored_bytes")
    assert "no data set can be added" in error["message"]
    assert row_counts() == before


def test_an_upload_that_fills_the_quota_exactly_is_stored(client_with):
    client = client_with(quota_stored_bytes=2 * XOR_BYTES)
    upload_xor(client)
    upload_xor(client)


def test_a_job_over_the_jobs_quota_is_a_429_with_retry_after(client_with, row_counts):
    client = client_with(quota_jobs=2)
    dataset_id = upload_xor(client)
    assert [submit(client, dataset_id).status_code for _ in range(2)] == [202, 202]
    before = row_counts()
    response = submit(client, dataset_id)
    error = assert_envelope(response, 429, "quota.jobs")
    assert error["code"] == "too_many_requests"
    assert "QUOTA_JOBS" in error["message"]
    assert response.headers["Retry-After"] == str(JOBS_RETRY_AFTER_SECONDS)
    assert row_counts() == before


def test_jobs_that_ended_leave_the_jobs_quota(client_with, sessions):
    client = client_with(quota_jobs=1)
    dataset_id = upload_xor(client)
    job_id = submit(client, dataset_id).get_json()["id"]
    assert submit(client, dataset_id).status_code == 429
    with sessions() as session:
        session.get(TrainingJob, job_id).status = JobStatus.CANCELLED
        session.commit()
    assert submit(client, dataset_id).status_code == 202


def test_an_idempotent_retry_is_not_refused_by_the_jobs_quota(client_with):
    client = client_with(quota_jobs=1)
    dataset_id = upload_xor(client)
    retry = {"headers": {"Idempotency-Key": "first-job"}}
    first = submit(client, dataset_id, **retry)
    assert first.status_code == 202
    again = submit(client, dataset_id, **retry)
    assert again.status_code == 202, again.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert_envelope(submit(client, dataset_id), 429, "quota.jobs")


def test_a_job_while_storage_is_full_is_a_422_and_queues_nothing(client_with, row_counts):
    client = client_with(quota_stored_bytes=XOR_BYTES)
    dataset_id = upload_xor(client)
    before = row_counts()
    error = assert_envelope(submit(client, dataset_id), 422, "quota.stored_bytes")
    assert "model could not be stored" in error["message"]
    assert row_counts() == before


def test_models_count_against_the_storage_quota(client_with, sessions, settings):
    client = client_with(quota_stored_bytes=2 * XOR_BYTES)
    dataset_id = upload_xor(client)
    run_training(sessions, submit(client, dataset_id).get_json()["id"], settings)
    # One data set and a model stored: the room left is less than another data set.
    assert_envelope(client.post("/v1/datasets", json={"builtin": "xor"}), 422, "quota.stored_bytes")


def test_another_tenants_holdings_do_not_count(client_with, sessions):
    # Room for one data set and one job per tenant.
    client = client_with(auth="required", quota_jobs=1, quota_stored_bytes=XOR_BYTES + 1)
    alice, bob = bearer(api_key(sessions, "alice")), bearer(api_key(sessions, "bob"))
    alices_data = upload_xor(client, headers=alice)
    assert submit(client, alices_data, headers=alice).status_code == 202
    bobs_data = upload_xor(client, headers=bob)
    assert submit(client, bobs_data, headers=bob).status_code == 202
    assert_envelope(submit(client, alices_data, headers=alice), 429, "quota.jobs")
    assert_envelope(client.post("/v1/datasets", json={"builtin": "xor"}, headers=bob), 422)


def test_zero_turns_the_quotas_off(client_with):
    client = client_with(quota_jobs=0, quota_stored_bytes=0)
    dataset_id = upload_xor(client)
    upload_xor(client)
    assert [submit(client, dataset_id).status_code for _ in range(3)] == [202] * 3
