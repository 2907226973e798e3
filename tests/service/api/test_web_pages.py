"""AUTH=off keeps web pages out (issue 21 row 11): a foreign Host (DNS rebinding) and a
state-changing request from another origin are 403s; the bodies a page can send without a
preflight are 415s where the endpoint does not take them; the service's own pages pass."""

import io

import pytest

from service.db.models import TrainingJob
from tests.factories import api_key, assert_envelope, bearer, queued_xor_job

EVIL = "https://evil.example"
CSV = "x,y\n0,a\n1,b\n0,a\n1,b\n"


def csv_form() -> dict:
    return {"task": "classification", "target": "y", "file": (io.BytesIO(CSV.encode()), "t.csv")}


def status_of(sessions, job_id: int) -> str:
    with sessions() as session:
        return session.get(TrainingJob, job_id).status


def test_a_form_post_from_another_origin_cancels_nothing(client, sessions):
    job_id = queued_xor_job(sessions)
    response = client.post(f"/v1/jobs/{job_id}/cancel", data={"a": "b"}, headers={"Origin": EVIL})
    assert EVIL in assert_envelope(response, 403)["message"]
    assert status_of(sessions, job_id) == "queued"


def test_a_multipart_upload_from_another_origin_is_refused(client, row_counts):
    before = row_counts()
    response = client.post(
        "/v1/datasets",
        data=csv_form(),
        content_type="multipart/form-data",
        headers={"Origin": EVIL},
    )
    assert_envelope(response, 403)
    assert row_counts() == before


def test_a_cross_site_fetch_is_refused_without_an_origin(client):
    response = client.post(
        "/v1/datasets", json={"builtin": "xor"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert "cross-site" in assert_envelope(response, 403)["message"]


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "10.0.0.7:8000", "localhost.evil.example"]
)
def test_a_foreign_host_is_refused_even_to_read(client, host):
    response = client.get("/v1/datasets", headers={"Host": host})
    assert "not a loopback" in assert_envelope(response, 403)["message"]


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000"])
def test_loopback_hosts_and_the_own_origin_are_served(client, host):
    headers = {"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
    assert client.get("/v1/datasets", headers=headers).status_code == 200
    assert client.post("/v1/datasets", json={"builtin": "xor"}, headers=headers).status_code == 201


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
)
def test_a_page_body_to_an_endpoint_that_does_not_take_it_is_a_415(client, sessions, content_type):
    job_id = queued_xor_job(sessions)
    response = client.post(f"/v1/jobs/{job_id}/cancel", data="", content_type=content_type)
    assert content_type in assert_envelope(response, 415)["message"]
    assert status_of(sessions, job_id) == "queued"
    assert_envelope(client.post("/v1/jobs", data="{}", content_type=content_type), 415)


def test_uploads_still_take_multipart(client):
    assert (
        client.post("/v1/datasets", data=csv_form(), content_type="multipart/form-data").status_code
        == 201
    )


def test_behind_a_trusted_proxy_the_forwarded_origin_is_the_own(client_with):
    client = client_with(trusted_proxies=1)
    forwarded = {"X-Forwarded-Host": "localhost:8080", "X-Forwarded-Proto": "https"}
    own = client.post(
        "/v1/datasets",
        json={"builtin": "xor"},
        headers={**forwarded, "Origin": "https://localhost:8080"},
    )
    assert own.status_code == 201
    other = client.post(
        "/v1/datasets",
        json={"builtin": "xor"},
        headers={**forwarded, "Origin": "http://localhost:8000"},
    )
    assert_envelope(other, 403)


def test_with_keys_required_none_of_this_applies(client_with, sessions):
    client = client_with(auth="required")
    key = api_key(sessions, "alice", "write")
    headers = {**bearer(key), "Host": "api.example", "Origin": EVIL}
    assert client.post("/v1/datasets", json={"builtin": "xor"}, headers=headers).status_code == 201
