"""GET /v1/jobs/{id}/loss.svg|png and /v1/jobs/loss.svg|png?ids=: loss curves drawn by the API."""

import struct
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.db.models import EpochMetric, TrainingJob
from service.jobs.plots import LossCurve, loss_chart
from tests.conftest import BACKENDS
from tests.factories import api_key, assert_envelope, bearer, queued_xor_job

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG = "{http://www.w3.org/2000/svg}"


def add_losses(sessions, job_id: int, epochs: int, validation: bool = True) -> None:
    """``epochs`` epoch records of a job with falling train and (optionally) validation losses."""
    with sessions() as session:
        for epoch in range(1, epochs + 1):
            val_loss = 2 / epoch if validation else None
            session.add(
                EpochMetric(
                    job_id=job_id, epoch=epoch, train_loss=1 / epoch, val_loss=val_loss, seconds=0.1
                )
            )
        session.get(TrainingJob, job_id).epoch = epochs
        session.commit()


def svg_of(response) -> str:
    """The SVG answered, checked to be XML. matplotlib draws text as paths, each group after a
    comment holding its text: the labels are found in the SVG's text, not in its elements."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "image/svg+xml"
    assert response.headers["Cache-Control"] == "no-store"
    ET.fromstring(response.get_data())
    return response.get_data(as_text=True)


def drawn_lines(svg: str) -> list[str]:
    """The ids of the plotted series (matplotlib's ``line2d_N`` groups with a long path: ticks
    and the legend's samples are short lines)."""
    return [
        group.get("id")
        for group in ET.fromstring(svg).iter(f"{SVG}g")
        if (group.get("id") or "").startswith("line2d_")
        and any(len(path.get("d", "")) > 500 for path in group.iter(f"{SVG}path"))
    ]


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_a_jobs_svg_draws_its_train_and_validation_curves(client, sessions):
    job_id = queued_xor_job(sessions, epochs=100)
    add_losses(sessions, job_id, 100)
    svg = svg_of(client.get(f"/v1/jobs/{job_id}/loss.svg"))
    assert f"job {job_id} train" in svg and f"job {job_id} validation" in svg
    assert len(drawn_lines(svg)) == 2


def test_a_job_without_validation_has_one_curve(client, sessions):
    job_id = queued_xor_job(sessions, epochs=100)
    add_losses(sessions, job_id, 100, validation=False)
    svg = svg_of(client.get(f"/v1/jobs/{job_id}/loss.svg"))
    assert len(drawn_lines(svg)) == 1
    assert "validation" not in svg


def test_log_true_draws_a_log_scale(client, sessions):
    job_id = queued_xor_job(sessions, epochs=100)
    add_losses(sessions, job_id, 100)
    linear = svg_of(client.get(f"/v1/jobs/{job_id}/loss.svg"))
    log = svg_of(client.get(f"/v1/jobs/{job_id}/loss.svg?log=true"))
    assert "loss (log scale)" in log and "loss (log scale)" not in linear
    assert "10^{-2}" in log  # the decade ticks of a log axis, in matplotlib's mathtext


def test_a_jobs_png_is_a_png_of_the_chart_size(client, sessions):
    job_id = queued_xor_job(sessions, epochs=10)
    add_losses(sessions, job_id, 10)
    response = client.get(f"/v1/jobs/{job_id}/loss.png?log=true")
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.headers["Cache-Control"] == "no-store"
    image = response.get_data()
    assert image.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", image[16:24])  # the IHDR chunk
    assert (width, height) == (800, 450)
    assert 5_000 < len(image) < 500_000


def test_a_job_with_no_epochs_is_an_empty_chart_that_says_so(client, sessions):
    job_id = queued_xor_job(sessions)
    svg = svg_of(client.get(f"/v1/jobs/{job_id}/loss.svg"))
    assert "no epochs yet" in svg
    assert drawn_lines(svg) == []
    assert client.get(f"/v1/jobs/{job_id}/loss.png").status_code == 200


def test_several_jobs_share_one_chart_one_legend_entry_per_series(client, sessions):
    job_ids = [queued_xor_job(sessions, epochs=100) for _ in range(3)]
    for job_id in job_ids[:2]:
        add_losses(sessions, job_id, 100)
    ids = ",".join(map(str, job_ids))
    svg = svg_of(client.get(f"/v1/jobs/loss.svg?ids={ids}"))
    assert all(f"job {job_id} train" in svg for job_id in job_ids[:2])
    assert f"job {job_ids[2]} train" not in svg  # no epochs yet: nothing to draw
    assert len(drawn_lines(svg)) == 4
    png = client.get(f"/v1/jobs/loss.png?ids={ids}&log=true")
    assert png.status_code == 200 and png.get_data().startswith(PNG_SIGNATURE)


def test_an_unknown_id_among_several_is_a_404_naming_it(client, sessions):
    job_id = queued_xor_job(sessions)
    response = client.get(f"/v1/jobs/loss.svg?ids={job_id},999")
    assert "999" in assert_envelope(response, 404)["message"]
    assert (
        "9999999999"
        in assert_envelope(client.get("/v1/jobs/loss.png?ids=9999999999"), 404)["message"]
    )


@pytest.mark.parametrize(
    "ids", ["", "a", "0", "3,", ",3", "3,,4", "-1", "03", "3 4", ",".join(["1"] * 21)]
)
def test_a_malformed_or_too_long_id_list_is_a_422_naming_ids(client, ids):
    assert_envelope(client.get("/v1/jobs/loss.svg", query_string={"ids": ids}), 422, "ids")


def test_ids_are_required_and_log_must_be_a_boolean(client, sessions):
    assert_envelope(client.get("/v1/jobs/loss.png"), 422, "ids")
    job_id = queued_xor_job(sessions)
    assert_envelope(client.get(f"/v1/jobs/{job_id}/loss.svg?log=sideways"), 422, "log")


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_another_tenants_jobs_are_404_alone_or_among_ours(client_with, sessions):
    client = client_with(auth="required")
    theirs = queued_xor_job(sessions)  # the "default" tenant's
    ours = bearer(api_key(sessions, "bob", "read"))
    for url in (
        f"/v1/jobs/{theirs}/loss.svg",
        f"/v1/jobs/{theirs}/loss.png",
        f"/v1/jobs/loss.svg?ids={theirs}",
    ):
        assert str(theirs) in assert_envelope(client.get(url, headers=ours), 404)["message"]
    owner = bearer(api_key(sessions, "default", "read"))
    assert client.get(f"/v1/jobs/loss.png?ids={theirs}", headers=owner).status_code == 200


def test_charts_drawn_at_once_by_many_threads_are_the_chart_drawn_alone():
    curves = [
        LossCurve(f"job {job}", range(1, 501), [job / e for e in range(1, 501)], [None] * 500)
        for job in (1, 2)
    ]
    alone = loss_chart(curves, "Loss", "png")
    with ThreadPoolExecutor(16) as pool:
        drawn = list(pool.map(lambda _: loss_chart(curves, "Loss", "png"), range(16)))
    assert all(image == alone for image in drawn)


@pytest.mark.parametrize(
    "image_format, media_type", [("svg", "image/svg+xml"), ("png", "image/png")]
)
@pytest.mark.parametrize("path", ["/v1/jobs/{job_id}/loss", "/v1/jobs/loss"])
def test_the_openapi_document_declares_the_images_and_the_errors(
    client, path, image_format, media_type
):
    operation = client.get("/openapi.json").get_json()["paths"][f"{path}.{image_format}"]["get"]
    responses = operation["responses"]
    assert responses["200"]["content"] == {
        media_type: {"schema": {"type": "string", "format": "binary"}}
    }
    assert responses["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert "422" in responses
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert parameters["log"]["schema"]["type"] == "boolean"
    if path == "/v1/jobs/loss":
        assert parameters["ids"]["required"] and parameters["ids"]["schema"]["pattern"]
