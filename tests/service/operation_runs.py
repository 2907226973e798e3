"""Running an accepted operation in-process, as `backprop webhook-worker` runs it (the live
stacks run it in the real worker process: tests/integration/test_rollout.py)."""

from service.generation import generation_for
from worker.operations import run_operation


def accepted_operation(response) -> int:
    """The id of the operation a 202 answer points at (checking the answer's form)."""
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert response.headers["Location"] == f"/v1/operations/{body['id']}"
    assert body["status"] == "queued" and body["result"] is None and body["error"] is None
    return body["id"]


def run_accepted(client, sessions, settings, response) -> dict:
    """Run the operation ``response`` accepted, and return it as GET shows it."""
    return run_now(client, sessions, settings, accepted_operation(response))


def run_now(client, sessions, settings, operation_id: int) -> dict:
    """Run operation ``operation_id``, and return it as GET shows it."""
    run_operation(sessions, operation_id, settings, generation_for(settings))
    shown = client.get(f"/v1/operations/{operation_id}")
    assert shown.status_code == 200, shown.get_json()
    return shown.get_json()
