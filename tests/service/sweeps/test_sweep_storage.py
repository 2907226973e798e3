"""What a sweep stores (issue 21 row 2): its base body once and each trial's parameters, every
trial still checked at submission and resolved again when it becomes a job, into exactly the
specs the trials had when each trial's resolved specs were stored; sweeps stored that way
(before migration 0010) are read as before."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import Text, cast, func, select, update

from service.db import sweeps
from service.db.models import Sweep, TrainingJob
from service.db.quotas import json_bytes
from service.jobs.specs import resolve_job
from service.specs_json import trial_body
from service.sweeps.search import grid
from tests.conftest import BACKENDS
from tests.factories import assert_envelope, sweep_body
from worker.training import run_training

ROOT = Path(__file__).resolve().parents[3]
TRIALS = 1000
# Under MAX_LAYERS (100): the base is what makes a trial's specs big.
LAYERS = 100


@pytest.fixture
def dataset_id(client) -> int:
    return client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]


def deep_network(layers: int) -> dict:
    hidden = [{"units": 2, "activation": "tanh"}] * (layers - 1)
    return {"layers": [*hidden, {"units": 2, "activation": "softmax"}]}


def big_sweep(dataset_id: int, trials: int = TRIALS) -> dict:
    """A random sweep of ``trials`` trials of one parameter over a ``LAYERS``-layer network."""
    search = {"method": "random", "trials": trials, "seed": 3, "parameters": {}}
    search["parameters"]["training.l2"] = {"uniform": [0, 1]}
    return sweep_body(dataset_id, network=deep_network(LAYERS), search=search, max_parallel=1)


def column_bytes(session, sweep_id: int) -> int:
    """The bytes the database holds in the sweep's JSON columns."""
    columns = (Sweep.search, Sweep.base, Sweep.trials)
    return sum(
        session.scalar(
            select(func.coalesce(func.length(cast(column, Text)), 0)).where(Sweep.id == sweep_id)
        )
        for column in columns
    )


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_a_sweep_stores_its_base_once_and_each_trials_parameters(client, sessions, dataset_id):
    response = client.post("/v1/sweeps", json=big_sweep(dataset_id))
    assert response.status_code == 202, response.get_json()
    with sessions() as session:
        sweep = session.get(Sweep, response.get_json()["id"])
        assert sweep.base["network"] == deep_network(LAYERS)
        assert len(sweep.trials) == TRIALS
        assert all(list(params) == ["training.l2"] for params in sweep.trials)
        stored = json_bytes(sweep.search, sweep.base, sweep.trials)
        assert sweep.stored_bytes == stored == column_bytes(session, sweep.id)
        largest_params = max(json_bytes(params) for params in sweep.trials)
        # About base + 1,000 x params (a list's ", " between them): not 1,000 x the base.
        bound = json_bytes(sweep.search, sweep.base) + TRIALS * (largest_params + 2)
        assert stored <= bound
        assert stored * 20 < TRIALS * json_bytes(sweep.base)


def test_a_trial_that_cannot_train_is_still_refused_at_submission(client, dataset_id, row_counts):
    body = big_sweep(dataset_id)
    body["search"]["parameters"]["network.layers[0].activation"] = {"choice": ["tanh", "nope"]}
    before = row_counts()
    error = assert_envelope(client.post("/v1/sweeps", json=body), 422)
    (field,) = error["details"]
    assert field.startswith("trials[") and field.endswith("].network.layers[0].activation")
    assert row_counts() == before


def the_old_way(session, settings, body: dict, params: dict) -> dict:
    """A trial's job as it was made when the sweep stored every trial's resolved specs: the
    base deep-copied with the parameters set, resolved as a job is."""
    trial = trial_body({"network": body["network"], "training": body["training"]}, params)
    resolved = resolve_job(
        session, settings, body["dataset_id"], trial["network"], trial["training"]
    )
    return {
        "network": resolved.network,
        "training": resolved.training,
        "warnings": resolved.warnings,
        "params": params,
        "epochs": resolved.training["epochs"],
        "stored_bytes": json_bytes(resolved.network, None, resolved.training),
    }


def job_columns(job: TrainingJob) -> dict:
    names = ("network", "training", "warnings", "params", "epochs", "stored_bytes")
    return {name: getattr(job, name) for name in names}


def trial_jobs(session, sweep_id: int) -> list[TrainingJob]:
    statement = select(TrainingJob).where(TrainingJob.sweep_id == sweep_id)
    return list(session.scalars(statement.order_by(TrainingJob.trial)))


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_trials_become_the_jobs_they_did_when_every_trials_specs_were_stored(
    client, sessions, settings, dataset_id
):
    body = sweep_body(dataset_id, max_parallel=4)
    body["training"]["validation_split"] = 0.25
    body["training"]["batch_size"] = 64
    sweep = client.post("/v1/sweeps", json=body).get_json()
    with sessions() as session:
        jobs = trial_jobs(session, sweep["id"])
        expected = [
            the_old_way(session, settings, body, params)
            # The search as the service read it (the test client sends keys sorted).
            for params in grid(sweep["search"]["parameters"], settings.max_sweep_trials)
        ]
    assert [job_columns(job) for job in jobs] == expected
    assert expected[0]["warnings"]  # batch_size 64 > the training rows: a warning kept


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_a_sweep_stored_before_0010_queues_its_stored_specs(client, sessions, dataset_id):
    """Its ``base`` is NULL and its ``trials`` every trial's resolved specs: used as stored."""
    sweep = client.post("/v1/sweeps", json=sweep_body(dataset_id)).get_json()
    with sessions() as session:
        first, second = trial_jobs(session, sweep["id"])
        whole = [
            {key: getattr(job, key) for key in ("params", "network", "training", "warnings")}
            for job in (first, second, first, second)
        ]
        whole[2]["training"] = {**whole[2]["training"], "epochs": 7}
        session.execute(update(Sweep).where(Sweep.id == sweep["id"]).values(trials=whole))
        session.execute(update(Sweep).where(Sweep.id == sweep["id"]).values(base=None))
        session.commit()
    assert client.post(f"/v1/jobs/{first.id}/cancel").status_code == 202
    with sessions() as session:
        (job_id,) = sweeps.advance(session, sweep["id"]).job_ids
        session.commit()
        third = session.get(TrainingJob, job_id)
        assert (third.trial, third.epochs) == (3, 7)
        assert third.training == whole[2]["training"] and third.network == whole[2]["network"]


def test_a_trial_whose_data_set_was_deleted_fails_in_the_worker(
    client, sessions, settings, dataset_id
):
    sweep = client.post("/v1/sweeps", json=sweep_body(dataset_id, max_parallel=1)).get_json()
    with sessions() as session:
        (first,) = trial_jobs(session, sweep["id"])
    assert client.post(f"/v1/jobs/{first.id}/cancel").status_code == 202
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    with sessions() as session:
        (job_id,) = sweeps.advance(session, sweep["id"]).job_ids
        session.commit()
    run_training(sessions, job_id, settings)
    shown = client.get(f"/v1/jobs/{job_id}").get_json()
    assert shown["status"] == "failed" and "data set was deleted" in shown["error"]
    assert shown["epochs"] == 20


PROBE = """
import json, sys
from service.api.app import create_app
from service.db.models import Base
from service.settings import Settings
from tests.factories import forget_peak_rss, peak_rss_growth_mb
from tests.service.sweeps.test_sweep_storage import big_sweep

folder = sys.argv[1]
settings = Settings(
    database_url=f"sqlite:///{folder}/db.sqlite", broker_url=f"sqla+sqlite:///{folder}/b.sqlite"
)
app = create_app(settings)
Base.metadata.create_all(app.extensions["backprop"].sessions.kw["bind"])
client = app.test_client()
dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
client.post("/v1/sweeps", json=big_sweep(dataset_id, 2))  # warm up: imports, first queries
before = forget_peak_rss()
status = client.post("/v1/sweeps", json=big_sweep(dataset_id)).status_code
print(json.dumps({"status": status, "rise_mb": peak_rss_growth_mb(before)}))
"""


def test_a_big_sweeps_creation_takes_little_memory(tmp_path):
    """1,000 trials over a 100-layer network: +67 MB of peak RSS when every trial's resolved
    specs were kept and stored, a few MB now."""
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'client'}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE), str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["status"] == 202
    assert found["rise_mb"] < 24, found
