"""A fault injected by the integration tests only: a poison job that kills its worker process.

Inert unless the worker's environment has ``BACKPROP_TEST_KILL_WORKER_ON_DATASET``, which only
tests/integration/test_faults.py sets: a job on the data set of that name then SIGKILLs the
training process right after its claim, on every attempt, as a job that exhausts the machine's
memory would. Nothing in the API can set a worker's environment.
"""

import os
import signal

KILL_WORKER_ON_DATASET = "BACKPROP_TEST_KILL_WORKER_ON_DATASET"


def die_if_poisoned(dataset_name: str) -> None:
    """SIGKILL this process when the test hook names ``dataset_name``."""
    if os.environ.get(KILL_WORKER_ON_DATASET) == dataset_name:
        os.kill(os.getpid(), signal.SIGKILL)
