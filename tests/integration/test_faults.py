"""Jobs that survive: real `backprop worker` processes killed, a broker that redelivers, Redis and
PostgreSQL restarted under a running job, a poison job, many jobs at once, failing jobs.

The stack here is this module's own, on a PostgreSQL and a Redis server of its own
(tests/integration/servers.py): their restarts never touch the servers the other tests share. It
has short leases, a Redis visibility timeout shorter than a long job, and the poison-job hook of
worker/faults.py loaded into its workers and switched on for data sets named "poison".
"""

import concurrent.futures
import os
import signal
import time

import numpy as np
import psycopg
import pytest

from model_core import train
from service.datasets.ingest import dataset_from_sample
from service.db.models import Base
from service.db.npz import npz_to_arrays
from service.db.session import make_session_factory
from service.settings import Settings
from service.vocabulary import JobStatus
from tests.factories import job_body, queued_xor_job, wait_until
from tests.integration.conftest import in_own_worker, run_stack
from tests.integration.servers import port_open, postgres_server, redis_server
from worker.faults import INCLUDE_OPTION, KILL_WORKER_ON_DATASET
from worker.training import run_training

pytestmark = in_own_worker("faults")

LEASE_SECONDS = 3
VISIBILITY_TIMEOUT_SECONDS = 4
DIGITS_NETWORK = {
    "layers": [{"units": 128, "activation": "relu"}, {"units": 10, "activation": "softmax"}]
}


def digits_training(epochs: int, **extra) -> dict:
    """About 25 ms an epoch on this machine: a job of a few seconds, checkpointed often."""
    return {
        "epochs": epochs,
        "batch_size": 8,
        "seed": 7,
        "optimizer": {"name": "adam", "learning_rate": 0.001},
        **extra,
    }


# Asynchronous commits stay in PostgreSQL's memory for up to this long (its default is 200 ms),
# so that an immediate shutdown loses the last ones the worker was told were written.
WAL_WRITER_DELAY = "wal_writer_delay = 10s\n"


@pytest.fixture(scope="module")
def postgres():
    with postgres_server(WAL_WRITER_DELAY) as server:
        yield server


@pytest.fixture(scope="module")
def redis_broker(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("faults-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def database_url(postgres) -> str:
    return postgres.url


@pytest.fixture(scope="module")
def stack(database_url, redis_broker, tmp_path_factory):
    environment = {
        "DATABASE_URL": database_url,
        "BROKER_URL": redis_broker.url,
        "LEASE_SECONDS": str(LEASE_SECONDS),
        "HEARTBEAT_SECONDS": "0.5",
        "DISPATCH_INTERVAL_SECONDS": "0.3",
        "METRICS_FLUSH_SECONDS": "0.2",
        "CHECKPOINT_EVERY_EPOCHS": "25",
        "MAX_ATTEMPTS": "3",
        "JOB_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT_SECONDS),
        KILL_WORKER_ON_DATASET: "poison",
    }
    yield from run_stack(environment, tmp_path_factory.mktemp("faults"), (INCLUDE_OPTION,))


@pytest.fixture(scope="module")
def digits(stack) -> int:
    return stack.create("/v1/datasets", 201, json={"builtin": "digits"})["id"]


def job_columns(database_url: str, job_id: int, *columns: str) -> tuple:
    with psycopg.connect(database_url.replace("+psycopg", ""), connect_timeout=3) as connection:
        return connection.execute(
            f"SELECT {', '.join(columns)} FROM training_jobs WHERE id = %s", (job_id,)
        ).fetchone()


def submit(stack, dataset_id: int, epochs: int, **training) -> int:
    body = {
        "dataset_id": dataset_id,
        "network": DIGITS_NETWORK,
        "training": digits_training(epochs, **training),
    }
    return stack.create("/v1/jobs", 202, json=body)["id"]


def wait_for_epoch(database_url: str, job_id: int, epoch: int, timeout: float = 60) -> None:
    wait_until(
        lambda: (job_columns(database_url, job_id, "epoch")[0] or 0) >= epoch,
        timeout,
        f"job {job_id} at epoch {epoch}",
        ignoring=(psycopg.OperationalError,),
    )


def history(stack, job_id: int) -> list[dict]:
    return stack.get(f"/v1/jobs/{job_id}/epochs", params={"after": 0, "limit": 10000}).json()


def assert_each_epoch_once(stack, job_id: int, epochs: int) -> list[dict]:
    records = history(stack, job_id)
    assert [record["epoch"] for record in records] == list(range(1, epochs + 1))
    return records


def assert_succeeded(job: dict) -> None:
    assert job["status"] == "succeeded", job


def test_a_killed_training_process_resumes_from_its_checkpoint_to_the_same_weights(
    stack, digits, database_url
):
    epochs = 150
    job_id = submit(stack, digits, epochs)
    wait_until(
        lambda: job_columns(database_url, job_id, "checkpoint_epoch")[0],
        60,
        "a checkpoint",
        ignoring=(psycopg.OperationalError,),
    )
    checkpoint_epoch = job_columns(database_url, job_id, "checkpoint_epoch")[0]
    wait_for_epoch(database_url, job_id, checkpoint_epoch + 10)
    owner = job_columns(database_url, job_id, "lease_owner")[0]
    os.kill(int(owner.rsplit(":", 1)[1]), signal.SIGKILL)

    job = stack.wait_for_job(job_id)
    assert_succeeded(job)
    assert job["attempt"] == 2
    records = assert_each_epoch_once(stack, job_id, epochs)

    with dataset_from_sample("digits", None) as packed:
        sample = npz_to_arrays(packed.npz.read())
    training = {key: value for key, value in job["training"].items() if key != "max_seconds"}
    uninterrupted = train(sample["X"], sample["y"], job["network"], training)
    weights = stack.get(f"/v1/models/{job['model_id']}/weights").json()["layers"]
    for layer, (w, b) in zip(weights, uninterrupted.model.weights, strict=True):
        assert np.array_equal(np.asarray(layer["W"], dtype=w.dtype), w)
        assert np.array_equal(np.asarray(layer["b"], dtype=b.dtype), b)
    assert [(r["train_loss"], r["train_accuracy"]) for r in records] == [
        (r["train_loss"], r["train_accuracy"]) for r in uninterrupted.history
    ]


def test_a_job_longer_than_the_visibility_timeout_is_trained_once(stack, digits):
    started = time.monotonic()
    # About 10 s: well past the 4 s timeout plus kombu's 1 s scan, even on a faster machine.
    job_id = submit(stack, digits, epochs=500)
    job = stack.wait_for_job(job_id)
    assert_succeeded(job)
    assert time.monotonic() - started > VISIBILITY_TIMEOUT_SECONDS + 1
    assert job["attempt"] == 1
    logs = stack.worker_logs()
    # Redis delivered the job again while it ran; the second claim found the lease held.
    assert f"job {job_id} is not claimable" in logs, stack.log_tail()
    assert logs.count(f"job {job_id} succeeded") == 1
    assert_each_epoch_once(stack, job_id, 500)


def test_a_poison_job_fails_after_its_attempts_while_the_next_job_succeeds(stack):
    upload = {
        "name": "poison",
        "task": "classification",
        "features": [[0, 0], [0, 1], [1, 0], [1, 1]],
        "targets": [0, 1, 1, 0],
    }
    poison = stack.create("/v1/datasets", 201, json=upload)["id"]
    xor = stack.create("/v1/datasets", 201, json={"builtin": "xor"})["id"]
    poison_job = stack.create("/v1/jobs", 202, json=job_body(poison, epochs=50))["id"]
    next_job = stack.create("/v1/jobs", 202, json=job_body(xor, epochs=50))["id"]
    assert_succeeded(stack.wait_for_job(next_job, timeout=60))
    job = stack.wait_for_job(poison_job, timeout=90)
    assert (job["status"], job["attempt"]) == ("failed", 3), job
    assert "died on every attempt (3 of 3)" in job["error"]


def test_twenty_jobs_at_once_on_two_workers_are_each_trained_exactly_once(stack):
    xor = stack.create("/v1/datasets", 201, json={"builtin": "xor"})["id"]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        job_ids = list(
            pool.map(
                lambda _: stack.create("/v1/jobs", 202, json=job_body(xor, epochs=200))["id"],
                range(20),
            )
        )
    jobs = [stack.wait_for_job(job_id) for job_id in job_ids]
    assert [(job["status"], job["attempt"]) for job in jobs] == [("succeeded", 1)] * 20
    logs = stack.worker_logs()
    for job_id in job_ids:
        assert logs.count(f"job {job_id} succeeded") == 1
        assert_each_epoch_once(stack, job_id, 200)


def test_a_diverging_job_fails_with_the_epoch_and_a_cause(stack):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)) * 100
    upload = {
        "name": "wide",
        "task": "regression",
        "features": x.tolist(),
        "targets": (x @ [1.0, 2.0, 3.0]).tolist(),
    }
    dataset = stack.create("/v1/datasets", 201, json=upload)["id"]
    body = {
        "dataset_id": dataset,
        "network": {
            "layers": [{"units": 8, "activation": "relu"}, {"units": 1, "activation": "linear"}]
        },
        "training": {
            "epochs": 50,
            "batch_size": "full",
            "standardize": False,
            "seed": 1,
            "optimizer": {"name": "sgd", "learning_rate": 1.0},
        },
    }
    job = stack.wait_for_job(stack.create("/v1/jobs", 202, json=body)["id"])
    assert job["status"] == "failed" and "diverged at epoch 3" in job["error"], job
    assert "learning rate" in job["error"]
    assert [record["epoch"] for record in history(stack, job["id"])] == [1, 2]


def test_a_job_over_its_time_limit_fails_with_its_own_message(stack, digits):
    job = stack.wait_for_job(submit(stack, digits, epochs=10_000, max_seconds=1))
    assert job["status"] == "failed", job
    assert job["error"].startswith("exceeded training.max_seconds=1: stopped after epoch ")
    assert 0 < job["epoch"] < 10_000
    assert_each_epoch_once(stack, job["id"], job["epoch"])


def test_jobs_finish_when_redis_restarts_under_them(stack, digits, database_url, redis_broker):
    # Two run, one waits in Redis, whose restart without persistence loses that message: the
    # dispatcher sends it again once the queue is empty.
    job_ids = [submit(stack, digits, epochs=150) for _ in range(3)]
    wait_for_epoch(database_url, job_ids[0], 20)
    try:
        redis_broker.stop()
        assert not port_open(redis_broker.port)
        time.sleep(1)
    finally:
        redis_broker.start()
    for job_id in job_ids:
        assert_succeeded(stack.wait_for_job(job_id))
        assert_each_epoch_once(stack, job_id, 150)
    assert_succeeded(stack.wait_for_job(submit(stack, digits, epochs=5)))


def test_a_job_finishes_when_postgresql_restarts_under_it(stack, digits, database_url, postgres):
    job_id = submit(stack, digits, epochs=150)
    wait_for_epoch(database_url, job_id, 20)
    postgres.restart()
    job = stack.wait_for_job(job_id)
    assert_succeeded(job)
    assert_each_epoch_once(stack, job_id, 150)


def test_a_sweep_whose_trial_loses_its_worker_still_finishes(stack, digits, database_url):
    """The trial's training process is killed after its first checkpoint: the reaper queues it
    again, another attempt resumes it, and the sweep ends with every trial trained."""
    training = digits_training(150, checkpoint_every_epochs=25)
    body = {
        "dataset_id": digits,
        "network": DIGITS_NETWORK,
        "training": training,
        "search": {"method": "grid", "parameters": {"training.l2": [0.0, 0.001, 0.01]}},
        "metric": "train_loss",
        "max_parallel": 2,
        "model_name": "sweep-survivor",
    }
    sweep = stack.create("/v1/sweeps", 202, json=body)
    first = sweep["leaderboard"][0]["job_id"]
    wait_until(
        lambda: job_columns(database_url, first, "checkpoint_epoch")[0],
        60,
        "a checkpoint",
        ignoring=(psycopg.OperationalError,),
    )
    owner = job_columns(database_url, first, "lease_owner")[0]
    os.kill(int(owner.rsplit(":", 1)[1]), signal.SIGKILL)

    deadline = time.monotonic() + 180
    while (shown := stack.get(f"/v1/sweeps/{sweep['id']}").json())["status"] == "running":
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.2)
    assert shown["status"] == "succeeded", shown
    assert shown["counts"]["succeeded"] == 3
    assert stack.get(f"/v1/jobs/{first}").json()["attempt"] == 2
    for entry in shown["leaderboard"]:
        assert_each_epoch_once(stack, entry["job_id"], 150)
    assert stack.get("/v1/models/sweep-survivor").json()["id"] == shown["model_id"]


MAX_CRASHES = 3


def lost_epochs_noticed(caplog) -> bool:
    """Whether the training attempt noticed lost epochs after the last restart, given a few
    seconds to make its next flush."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if "the database lost epochs" in caplog.text:
            return True
        time.sleep(0.1)
    return False


def test_epochs_lost_by_a_crash_of_postgresql_are_written_again_exactly_once(postgres, caplog):
    """A training attempt in this process writes an epoch a flush, committed asynchronously;
    PostgreSQL is stopped with an immediate shutdown (a crash: what it acknowledged but had not
    written to its log is gone) and started again, up to MAX_CRASHES times until a crash lost
    epochs. The attempt finds the stored history shorter
    than it wrote, writes the missing epochs again from memory, and ends with each epoch stored
    once. Its own database, where commits other than flushes are synchronous (as by default)."""
    admin = f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute('CREATE DATABASE "crash"')
        connection.execute('ALTER DATABASE "crash" SET synchronous_commit = on')
    url = postgres.url.rsplit("/", 1)[0] + "/crash"
    sessions = make_session_factory(url, pre_ping=False)
    Base.metadata.create_all(sessions.kw["bind"])
    job_id = queued_xor_job(sessions, epochs=2000)
    settings = Settings(metrics_flush_seconds=0.0, checkpoint_every_epochs=10**6)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        attempt = pool.submit(run_training, sessions, job_id, settings)
        for crash in range(1, MAX_CRASHES + 1):
            # A synchronous commit (a heartbeat's) makes what came before it durable: a crash
            # right after one loses nothing, so crash again until one lost epochs.
            epoch = 300 * crash
            reached = lambda epoch=epoch: job_columns(url, job_id, "epoch")[0] >= epoch  # noqa: E731
            wait_until(reached, 60, f"epoch {epoch}")
            postgres.stop()
            postgres.start()
            if lost_epochs_noticed(caplog):
                break
        assert attempt.result(timeout=120) is JobStatus.SUCCEEDED
    assert "the database lost epochs" in caplog.text, f"no crash of {MAX_CRASHES} lost epochs"
    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        stored = connection.execute(
            "SELECT epoch FROM epoch_metrics WHERE job_id = %s ORDER BY epoch", (job_id,)
        )
        assert [epoch for (epoch,) in stored] == list(range(1, 2001))
