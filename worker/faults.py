"""A fault injected by the integration tests only: a poison job that kills its worker process.

Nothing in the service imports this module: tests/integration/test_faults.py loads it into its
workers with Celery's ``--include`` option (``INCLUDE_OPTION``), and sets
``BACKPROP_TEST_KILL_WORKER_ON_DATASET`` in their environment. A job on the data set of that name
then SIGKILLs the training process once its attempt has claimed it (the ``attempt_started``
signal of worker/training.py), on every attempt, as a job that exhausts the machine's memory
would. Nothing in the API can set a worker's environment or command line.
"""

import os
import signal

from worker.training import TrainingInput, attempt_started

KILL_WORKER_ON_DATASET = "BACKPROP_TEST_KILL_WORKER_ON_DATASET"
# The `backprop worker` option (passed on to celery worker) that imports this module.
INCLUDE_OPTION = f"--include={__name__}"


def die_if_poisoned(dataset_name: str) -> None:
    """SIGKILL this process when the test hook names ``dataset_name``."""
    if os.environ.get(KILL_WORKER_ON_DATASET) == dataset_name:
        os.kill(os.getpid(), signal.SIGKILL)


def kill_on_poisoned_dataset(sender, given: TrainingInput, **_details) -> None:
    """Receiver of ``attempt_started``: the attempt is claimed, so each death counts."""
    die_if_poisoned(given.dataset.name)


attempt_started.connect(kill_on_poisoned_dataset, weak=False)
