"""What the Python examples share: a Client for $BACKPROP_URL (and $BACKPROP_API_KEY), a job
trained to the end, and one readable line with exit code 1 for whatever goes wrong.

The examples import it as ``common``: Python puts the folder of the script it runs first on
``sys.path``.
"""

import sys
from collections.abc import Callable
from typing import Any

import requests
from backprop_client import ApiError, Client, Job

# Seconds a job of an example may take; the examples' jobs take a few.
JOB_TIMEOUT = 300


class CheckFailed(Exception):
    """What an example checks of the service's answers did not hold."""


def train(
    client: Client,
    dataset_id: int,
    network: dict[str, Any],
    training: dict[str, Any],
    model_name: str | None = None,
) -> Job:
    """Submit a job, wait for it and return it once it has succeeded; ``CheckFailed`` if it
    failed or was cancelled."""
    job = client.submit_job(dataset_id, network, training, model_name=model_name)
    epochs = f"{job['epochs']} epoch" + ("s" if job["epochs"] != 1 else "")
    print(f"job {job['id']}: training {epochs} on data set {dataset_id}")
    done = client.wait(job["id"], timeout=JOB_TIMEOUT)
    if done["status"] != "succeeded":
        raise CheckFailed(f"job {done['id']} {done['status']}: {done['error']}")
    print(f"job {done['id']}: succeeded, model {done['model_id']}")
    return done


def check_held_out_accuracy(job: Job, floor: float) -> None:
    """Print the job's accuracy on the rows its ``training.validation_split`` held out;
    ``CheckFailed`` when it is below ``floor`` (a fraction)."""
    accuracy, held_out = job["val_accuracy"], job["training"]["validation_split"]
    print(f"accuracy on the {held_out:.0%} held-out rows: {accuracy:.1%}")
    if accuracy < floor:
        raise CheckFailed(f"held-out accuracy {accuracy:.1%} is below {floor:.0%}")


def run(main: Callable[[Client], None]) -> None:
    """Call ``main`` with a Client; exit 1 with one line on stderr when the service cannot be
    reached, answers an error, a job does not finish in time, an event stream keeps dropping
    or a check fails."""
    client = Client()
    try:
        main(client)
    except requests.ConnectionError:
        sys.exit(
            f"error: cannot reach {client.base_url}: start the service with 'make run'"
            " (or set BACKPROP_URL)"
        )
    except ApiError as error:
        hint = " (set BACKPROP_API_KEY to a key)" if error.status == 401 else ""
        sys.exit(f"error: {error}{hint}")
    except (CheckFailed, TimeoutError, ConnectionError) as error:  # follow() gave up
        sys.exit(f"error: {error}")
