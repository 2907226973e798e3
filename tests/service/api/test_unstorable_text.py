"""Values one database stores and the other refuses (issue 21, row 12) are a 422 naming the field
on both: a NUL character in free text, a name longer than its column, an infinite number in a
JSON column."""

import io
import json

import pytest
from sqlalchemy import func, select

from service.db.models import ApiKey, Sweep
from tests.conftest import BACKENDS
from tests.factories import assert_envelope, job_body, sweep_body

pytestmark = pytest.mark.parametrize("sessions", BACKENDS, indirect=True)

CSV = b"a,b,label\n1,2,x\n3,4,z\n"


def count_rows(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def xor_id(client) -> int:
    return client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]


def post_json_text(client, path: str, body: dict):
    """``body`` as Python's json writes it: ``Infinity`` for an infinite float."""
    return client.post(path, data=json.dumps(body), content_type="application/json")


def upload_csv(client, filename: str, **form):
    body = {"task": "classification", "target": "label", "file": (io.BytesIO(CSV), filename)}
    return client.post("/v1/datasets", data={**body, **form}, content_type="multipart/form-data")


def test_an_infinite_checkpoint_interval_is_422_and_the_job_list_stays_json(client, row_counts):
    body = job_body(xor_id(client))
    body["training"]["checkpoint_every_seconds"] = float("inf")
    response = post_json_text(client, "/v1/jobs", body)
    assert_envelope(response, 422, "training.checkpoint_every_seconds")
    assert row_counts()["training_jobs"] == 0
    listed = client.get("/v1/jobs")
    assert json.loads(listed.get_data(as_text=True), parse_constant=pytest.fail) == []


def test_an_infinite_checkpoint_interval_in_a_sweep_is_422(client, sessions, row_counts):
    body = sweep_body(xor_id(client))
    body["training"]["checkpoint_every_seconds"] = float("inf")
    response = post_json_text(client, "/v1/sweeps", body)
    assert_envelope(response, 422, "trials[1].training.checkpoint_every_seconds")
    assert count_rows(sessions, Sweep) == 0 and row_counts()["training_jobs"] == 0


def test_a_finite_checkpoint_interval_is_stored(client):
    body = job_body(xor_id(client))
    body["training"]["checkpoint_every_seconds"] = 1e300
    response = post_json_text(client, "/v1/jobs", body)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["training"]["checkpoint_every_seconds"] == 1e300


def test_a_file_name_longer_than_a_name_is_422_unless_a_name_is_sent(client, row_counts):
    long_name = "f" * 300 + ".csv"
    error = assert_envelope(upload_csv(client, long_name), 422, "name")
    assert "file's name" in error["details"]["name"][0]
    assert row_counts()["datasets"] == 0
    created = upload_csv(client, long_name, name="short")
    assert created.status_code == 201 and created.get_json()["name"] == "short"


def test_a_file_name_is_the_default_name(client):
    assert upload_csv(client, "iris.csv").get_json()["name"] == "iris.csv"


@pytest.mark.parametrize(
    "send",
    [
        lambda client: client.post("/v1/datasets", json={"builtin": "xor", "name": "a\x00b"}),
        lambda client: upload_csv(client, "iris.csv", name="a\x00b"),
        lambda client: upload_csv(client, "a\x00b.csv"),
    ],
    ids=["json", "form", "file name"],
)
def test_a_nul_in_a_data_set_name_is_422(client, row_counts, send):
    assert "NUL" in str(assert_envelope(send(client), 422, "name")["details"])
    assert row_counts()["datasets"] == 0


def test_a_nul_in_a_key_description_is_422(client, sessions):
    response = client.post("/v1/keys", json={"description": "ci\x00"})
    assert_envelope(response, 422, "description")
    assert count_rows(sessions, ApiKey) == 0
    assert client.post("/v1/keys", json={"description": ""}).status_code == 201
