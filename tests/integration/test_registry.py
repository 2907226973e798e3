"""Names, versions and aliases through real API processes and workers, on both backends."""

import requests

from tests.factories import job_body

ROWS = {"instances": [[0, 0], [0, 1], [1, 0], [1, 1]]}
REQUESTS_PER_CHECK = 24


def train_named(stack, dataset_id: int, name: str, count: int) -> list[dict]:
    """Submit ``count`` jobs of ``name`` at once (the two workers run them side by side) and
    wait for them all."""
    bodies = [{**job_body(dataset_id, epochs=300), "model_name": name} for _ in range(count)]
    submitted = [stack.create("/v1/jobs", 202, json=body) for body in bodies]
    return [stack.wait_for_job(job["id"]) for job in submitted]


def versions_answering(stack, ref: str) -> set[str]:
    """The X-Model-Version of ``REQUESTS_PER_CHECK`` predictions, each on a new connection, so
    that both API processes answer some."""
    versions = set()
    for _ in range(REQUESTS_PER_CHECK):
        response = requests.post(
            f"{stack.base_url}/v1/models/{ref}/predict",
            json=ROWS,
            timeout=30,
            headers={"Connection": "close"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["version"] == int(response.headers["X-Model-Version"])
        versions.add(response.headers["X-Model-Version"])
    return versions


def test_versions_and_an_alias_moved_under_load(stack):
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "xor"})
    name = f"xor-{stack.logs.name.lower().replace('_', '-')}"
    jobs = train_named(stack, dataset["id"], name, 3)
    assert all(job["status"] == "succeeded" for job in jobs), jobs
    versions = [stack.get(f"/v1/models/{job['model_id']}").json()["version"] for job in jobs]
    assert sorted(versions) == [1, 2, 3]
    assert versions_answering(stack, name) == {"3"}

    alias = f"/v1/models/{name}/aliases/production"
    assert stack.http.put(stack.base_url + alias, json={"version": 1}).status_code == 200
    assert versions_answering(stack, f"{name}@production") == {"1"}
    assert stack.http.put(stack.base_url + alias, json={"version": 2}).status_code == 200
    assert versions_answering(stack, f"{name}@production") == {"2"}

    assert stack.http.delete(f"{stack.base_url}/v1/models/{name}:3").status_code == 204
    assert versions_answering(stack, name) == {"2"}
