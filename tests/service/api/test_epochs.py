"""GET /v1/jobs/{id}/epochs: pages of the epoch history, and a Link to the next one."""

from tests.factories import add_epochs, queued_xor_job


def test_a_full_page_links_to_the_next_until_the_history_ends(client, sessions):
    job_id = queued_xor_job(sessions, epochs=2500)
    add_epochs(sessions, job_id, range(1, 2501))
    url, seen = f"/v1/jobs/{job_id}/epochs?after=0", []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += [record["epoch"] for record in response.get_json()]
        link = response.headers.get("Link")
        url = link and link.removeprefix("<").split(">", 1)[0]
        assert link is None or link.endswith('>; rel="next"')
    assert seen == list(range(1, 2501))


def test_the_default_page_is_1000_epochs_and_says_more_exist(client, sessions):
    job_id = queued_xor_job(sessions, epochs=2000)
    add_epochs(sessions, job_id, range(1, 2001))
    response = client.get(f"/v1/jobs/{job_id}/epochs")
    assert len(response.get_json()) == 1000
    assert (
        response.headers["Link"] == f'</v1/jobs/{job_id}/epochs?after=1000&limit=1000>; rel="next"'
    )


def test_a_page_that_ends_the_history_has_no_link(client, sessions):
    job_id = queued_xor_job(sessions, epochs=10)
    add_epochs(sessions, job_id, range(1, 11))
    response = client.get(f"/v1/jobs/{job_id}/epochs?after=4&limit=6")
    assert [record["epoch"] for record in response.get_json()] == list(range(5, 11))
    assert "Link" not in response.headers
