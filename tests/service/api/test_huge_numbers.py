"""Numbers no row can have are clear 4xx answers, never an overflow inside the database driver."""

import pytest

from tests.factories import assert_envelope, job_body

HUGE = 10**30


@pytest.fixture
def xor_id(client) -> int:
    return client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]


@pytest.mark.parametrize("path", [f"/v1/jobs/{HUGE}", f"/v1/datasets/{HUGE}", f"/v1/models/{HUGE}"])
def test_a_huge_id_in_a_path_is_404(client, path):
    assert_envelope(client.get(path), 404)


def test_a_huge_dataset_id_is_422(client, row_counts):
    body = job_body(1)
    body["dataset_id"] = HUGE
    assert_envelope(client.post("/v1/jobs", json=body), 422, "dataset_id")
    assert row_counts()["training_jobs"] == 0


def test_huge_epochs_are_422(client, xor_id, row_counts):
    body = job_body(xor_id)
    body["training"]["epochs"] = HUGE
    assert_envelope(client.post("/v1/jobs", json=body), 422, "training.epochs")
    assert row_counts()["training_jobs"] == 0


def test_a_huge_after_is_422(client, xor_id):
    job = client.post("/v1/jobs", json=job_body(xor_id)).get_json()
    response = client.get(f"/v1/jobs/{job['id']}/epochs?after={HUGE}")
    assert_envelope(response, 422, "after")


def test_a_page_beyond_any_table_is_empty(client):
    response = client.get(f"/v1/datasets?page={10**21}")
    assert response.status_code == 200 and response.get_json() == []


def test_a_network_over_the_parameter_limit_is_422(client, xor_id, row_counts):
    body = job_body(xor_id)
    body["network"]["layers"][0]["units"] = 10**7  # (2 + 1) x 10**7 + (10**7 + 1) x 2 weights
    response = client.post("/v1/jobs", json=body)
    assert "MAX_PARAMETERS" in assert_envelope(response, 422, "network.layers")["message"]
    assert row_counts()["training_jobs"] == 0
