"""Sweeps through the API, their trials trained by the worker's own ``run_training`` in this
process: bad bodies, the quota, trials queued ``max_parallel`` at a time by the attempt that ends
one, the leaderboard, the best model registered, cancel, ASHA's decisions, and the dispatcher
advancing a sweep whose trial ended without a worker."""

from contextlib import contextmanager

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.exc import IntegrityError

from service.db import attempts, sweeps
from service.db.models import EpochMetric, Sweep, TrainingJob
from service.dispatcher import Dispatcher
from service.sweeps.asha import Asha, asha_rule
from service.vocabulary import JobStatus
from tests.conftest import BACKENDS
from tests.factories import assert_envelope, sweep_body
from tests.service.test_dispatcher import FakeQueue
from worker import training
from worker.training import run_training


@pytest.fixture
def dataset_id(client) -> int:
    return client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]


def create(client, body: dict) -> dict:
    response = client.post("/v1/sweeps", json=body)
    assert response.status_code == 202, response.get_json()
    assert response.headers["Location"].endswith(f"/v1/sweeps/{response.get_json()['id']}")
    return response.get_json()


def active_trials(sessions, sweep_id: int) -> list[int]:
    with sessions() as session:
        return list(
            session.scalars(
                select(TrainingJob.id)
                .where(TrainingJob.sweep_id == sweep_id, TrainingJob.status == JobStatus.QUEUED)
                .order_by(TrainingJob.trial)
            )
        )


def run_sweep(client, sessions, settings, sweep_id: int) -> dict:
    """Train the sweep's queued trials one at a time until none is left; the sweep as shown."""
    while queued := active_trials(sessions, sweep_id):
        run_training(sessions, queued[0], settings)
    return client.get(f"/v1/sweeps/{sweep_id}").get_json()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"search": {"method": "bayes", "parameters": {"training.l2": [0.1]}}}, "search.method"),
        ({"search": {"method": "grid", "parameters": {}}}, "search.parameters"),
        ({"search": {"method": "random", "parameters": {"training.l2": [0.1]}}}, "search.trials"),
        (
            {"search": {"method": "grid", "parameters": {"training.l2": {"uniform": [0, 1]}}}},
            "search.parameters.training.l2",
        ),
        (
            {"search": {"method": "grid", "parameters": {"dataset_id": [1, 2]}}},
            "search.parameters.dataset_id",
        ),
        (
            {
                "search": {
                    "method": "grid",
                    "parameters": {"network.layers[0].activation": ["tanh", "nope"]},
                }
            },
            "trials[2].network.layers[0].activation",
        ),
        ({"metric": "val_loss"}, "trials[1].training.validation_split"),
        ({"metric": "f1"}, "metric"),
        ({"goal": "up"}, "goal"),
        ({"max_parallel": 0}, "max_parallel"),
        (
            {"early_termination": {"method": "asha", "min_epochs": 1, "reduction_factor": 1}},
            "early_termination.reduction_factor",
        ),
        (
            {"early_termination": {"method": "hyperband", "min_epochs": 1}},
            "early_termination.method",
        ),
        ({"model_name": "Not A Name"}, "model_name"),
        (
            {"search": {"method": "grid", "parameters": {"network.initial_weights": [[]]}}},
            "search.parameters.network.initial_weights",
        ),
        (
            {
                "search": {
                    "method": "random",
                    "parameters": {"training.epochs": {"int": [1, 2**70]}},
                    "trials": 2,
                }
            },
            "search.parameters.training.epochs.int",
        ),
        (
            {
                "search": {
                    "method": "random",
                    "parameters": {"training.l2": {"uniform": [0, 10**400]}},
                    "trials": 2,
                }
            },
            "search.parameters.training.l2.uniform",
        ),
        ({"dataset_id": 424242}, "dataset_id"),
    ],
)
def test_a_bad_sweep_is_a_422_naming_the_field_and_stores_nothing(
    client, dataset_id, row_counts, changes, field
):
    before = row_counts()
    response = client.post("/v1/sweeps", json={**sweep_body(dataset_id), **changes})
    assert_envelope(response, 422, field)
    assert row_counts() == before
    assert client.get("/v1/sweeps").get_json() == []


def test_a_trial_that_cannot_train_names_its_number_and_parameters(client, dataset_id):
    search = {"method": "grid", "parameters": {"network.layers[1].units": [2, 3]}}
    error = assert_envelope(
        client.post("/v1/sweeps", json=sweep_body(dataset_id, search=search)), 422
    )
    (field,) = error["details"]
    assert field == "trials[2].network.layers[1].units"
    assert '(trial 2: {"network.layers[1].units": 3})' in error["details"][field][0]


def test_a_search_over_a_schedule_setting_and_a_layers_dropout(client, sessions, dataset_id):
    """``training.schedule.gamma`` and ``network.layers[0].dropout`` are paths like any other:
    each trial's job holds its values; a rate out of range names its trial and field."""
    body = sweep_body(dataset_id)
    body["training"]["schedule"] = {"name": "exponential", "gamma": 0.9}
    body["search"]["parameters"] = {
        "training.schedule.gamma": [0.5, 0.99],
        "network.layers[0].dropout": [0.0, 0.3],
    }
    sweep = create(client, body)
    with sessions() as session:
        trials = session.scalars(
            select(TrainingJob)
            .where(TrainingJob.sweep_id == sweep["id"])
            .order_by(TrainingJob.trial)
        )
        chosen = [
            (job.training["schedule"]["gamma"], job.network["layers"][0]["dropout"])
            for job in trials
        ]
    assert chosen == [(0.5, 0.0), (0.99, 0.0)]  # the first max_parallel trials, queued
    body["search"]["parameters"]["network.layers[0].dropout"] = [0.3, 1.0]
    error = assert_envelope(client.post("/v1/sweeps", json=body), 422)
    assert list(error["details"]) == ["trials[3].network.layers[0].dropout"]


def test_initial_weights_are_refused(client, dataset_id):
    body = sweep_body(dataset_id)
    body["network"]["initial_weights"] = [{"W": [[0.0]], "b": [0.0]}]
    assert_envelope(client.post("/v1/sweeps", json=body), 422, "network.initial_weights")


def test_the_location_carries_a_trusted_proxys_sub_path(client_with, dataset_id):
    client = client_with(trusted_proxies=1)
    response = client.post(
        "/v1/sweeps", json=sweep_body(dataset_id), headers={"X-Forwarded-Prefix": "/backprop"}
    )
    assert response.status_code == 202
    assert response.headers["Location"] == f"/backprop/v1/sweeps/{response.get_json()['id']}"


def test_more_trials_than_max_sweep_trials_is_a_422(client_with, dataset_id):
    client = client_with(max_sweep_trials=3)
    assert_envelope(
        client.post("/v1/sweeps", json=sweep_body(dataset_id)), 422, "search.parameters"
    )
    search = {"method": "random", "parameters": {"training.l2": [0.0, 0.1]}, "trials": 4}
    response = client.post("/v1/sweeps", json=sweep_body(dataset_id, search=search))
    assert_envelope(response, 422, "search.trials")


def test_only_the_first_trials_count_against_the_jobs_quota(client_with, dataset_id):
    client = client_with(quota_jobs=2)
    # 3 first trials alone exceed the quota: no wait would help, lower max_parallel.
    response = client.post("/v1/sweeps", json=sweep_body(dataset_id, max_parallel=3))
    assert "Retry-After" not in response.headers
    error = assert_envelope(response, 422, "max_parallel")
    assert "max_parallel 2 or less" in error["message"]
    sweep = create(client, sweep_body(dataset_id, max_parallel=2))
    assert sweep["counts"] == {
        "waiting": 2,
        "queued": 2,
        **{status: 0 for status in ("running", "succeeded", "failed", "cancelled", "pruned")},
    }
    error = assert_envelope(client.post("/v1/sweeps", json=sweep_body(dataset_id)), 429)
    assert "QUOTA_JOBS" in error["message"]


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_a_sweep_runs_max_parallel_trials_at_a_time_and_registers_its_best_model(
    client, sessions, settings, dataset_id
):
    sweep = create(client, sweep_body(dataset_id, model_name="xor-best"))
    assert sweep["status"] == "running" and sweep["n_trials"] == 4
    first, second = active_trials(sessions, sweep["id"])
    run_training(sessions, first, settings)
    # The attempt that ended trial 1 queued trial 3 in the same transaction.
    assert len(active_trials(sessions, sweep["id"])) == 2
    shown = run_sweep(client, sessions, settings, sweep["id"])
    assert shown["status"] == "succeeded"
    assert shown["counts"]["succeeded"] == 4 and shown["counts"]["waiting"] == 0
    board = shown["leaderboard"]
    assert sorted(entry["trial"] for entry in board) == [1, 2, 3, 4]
    assert [entry["metric"] for entry in board] == sorted(entry["metric"] for entry in board)
    params = [entry["params"] for entry in board]
    assert {"training.optimizer.learning_rate": 0.5, "network.layers[0].units": 8} in params
    for entry in board:
        job = client.get(f"/v1/jobs/{entry['job_id']}").get_json()
        assert entry["epoch"] == job["epoch"] == 20
        assert entry["metric"] == job["train_loss"] and entry["seconds"] > 0
        assert job["model_name"] is None
    best = board[0]
    assert shown["best_job_id"] == best["job_id"] and shown["model_id"] == best["model_id"]
    model = client.get("/v1/models/xor-best").get_json()
    assert (model["id"], model["version"]) == (best["model_id"], 1)


def test_every_trial_trains_with_the_same_seed(client, sessions, dataset_id):
    body = sweep_body(dataset_id)
    del body["training"]["seed"]
    sweep = create(client, body)
    with sessions() as session:
        trials = session.scalars(select(TrainingJob).where(TrainingJob.sweep_id == sweep["id"]))
        assert len({job.training["seed"] for job in trials}) == 1


def test_cancel_ends_queued_trials_asks_running_ones_to_stop_and_queues_no_more(
    client, sessions, settings, dataset_id
):
    sweep = create(client, sweep_body(dataset_id))
    first, second = active_trials(sessions, sweep["id"])
    with sessions() as session:
        session.get(TrainingJob, first).status = JobStatus.RUNNING
        session.commit()
    response = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert response.status_code == 202
    shown = response.get_json()
    assert shown["status"] == "cancelled" and shown["finished_at"] is not None
    assert shown["counts"]["cancelled"] == 1 and shown["counts"]["waiting"] == 2
    assert client.get(f"/v1/jobs/{first}").get_json()["cancel_requested"]
    assert client.get(f"/v1/jobs/{second}").get_json()["status"] == "cancelled"
    assert_envelope(client.post(f"/v1/sweeps/{sweep['id']}/cancel"), 409)
    assert client.post("/v1/sweeps/999/cancel").status_code == 404


def test_a_trial_cancelled_through_the_jobs_api_is_replaced_by_the_dispatcher(
    client, sessions, dataset_id
):
    sweep = create(client, sweep_body(dataset_id))
    first, second = active_trials(sessions, sweep["id"])
    assert client.post(f"/v1/jobs/{first}/cancel").status_code == 202
    queue = FakeQueue()
    Dispatcher(sessions, queue, max_attempts=3, interval=0.01).run_once()
    third = active_trials(sessions, sweep["id"])[-1]
    assert third not in (first, second) and third in queue.sent
    assert client.get(f"/v1/jobs/{third}").get_json()["status"] == "queued"


@contextmanager
def statements(sessions):
    """The SQL statements run on ``sessions``' engine inside the block, in order."""
    seen: list[str] = []
    engine = sessions.kw["bind"]

    def record(_conn, _cursor, statement, *_args) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_advance_first_locks_the_running_sweep_with_a_write(client, sessions, dataset_id):
    """A read first would run outside SQLite's transaction (pysqlite opens it at the first
    write, and SQLite ignores FOR UPDATE): two advances could both count room for a trial."""
    sweep = create(client, sweep_body(dataset_id))
    first, _second = active_trials(sessions, sweep["id"])
    assert client.post(f"/v1/jobs/{first}/cancel").status_code == 202
    with sessions() as session, statements(sessions) as seen:
        advanced = sweeps.advance(session, sweep["id"])
        session.commit()
    assert len(advanced.job_ids) == 1
    assert seen[0].startswith("UPDATE sweeps SET next_trial=sweeps.next_trial WHERE")
    with sessions() as session:
        session.add(TrainingJob(**trial_fields(session, sweep["id"], trial=3)))
        with pytest.raises(IntegrityError):
            session.commit()


def trial_fields(session, sweep_id: int, trial: int) -> dict:
    job = session.scalars(select(TrainingJob).where(TrainingJob.sweep_id == sweep_id)).first()
    fields = ("tenant", "dataset_id", "network", "training", "epochs", "sweep_id", "params")
    return {**{name: getattr(job, name) for name in fields}, "trial": trial}


def test_advance_leaves_a_cancelled_sweep_alone(client, sessions, dataset_id):
    sweep = create(client, sweep_body(dataset_id))
    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 202
    with sessions() as session, statements(sessions) as seen:
        assert sweeps.advance(session, sweep["id"]) == sweeps.Advance()
        session.commit()
    assert [statement.split()[0] for statement in seen] == ["UPDATE"]
    assert active_trials(sessions, sweep["id"]) == []


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_ending_a_trial_locks_its_sweep_before_its_job(client, sessions, dataset_id):
    """The order cancel_sweep takes them in: the other order deadlocks on PostgreSQL."""
    sweep = create(client, sweep_body(dataset_id))
    first, _second = active_trials(sessions, sweep["id"])
    with sessions() as session:
        claim = attempts.claim_job(session, first, "test", 15, 3)
    with sessions() as session, statements(sessions) as seen:
        attempts.end_attempt(session, first, claim.attempt, [], JobStatus.FAILED, "stopped")
    writes = [statement for statement in seen if statement.startswith("UPDATE")]
    assert writes[0].startswith("UPDATE sweeps ")
    assert writes[1].startswith("UPDATE training_jobs ")
    assert len(active_trials(sessions, sweep["id"])) == 2


def test_a_sweep_that_fails_to_advance_holds_up_no_other(client, sessions, dataset_id, caplog):
    broken, working = (create(client, sweep_body(dataset_id)) for _ in range(2))
    for sweep in (broken, working):
        first = active_trials(sessions, sweep["id"])[0]
        assert client.post(f"/v1/jobs/{first}/cancel").status_code == 202
    with sessions() as session:
        # Trial parameters that cannot make a job: advancing this sweep raises (DataError).
        unset = [{"network.layers[9].units": 4}] * 4
        session.execute(update(Sweep).where(Sweep.id == broken["id"]).values(trials=unset))
        session.commit()
    queue = FakeQueue()
    Dispatcher(sessions, queue, max_attempts=3, interval=0.01).run_once()
    assert len(active_trials(sessions, broken["id"])) == 1
    third = active_trials(sessions, working["id"])[-1]
    assert third in queue.sent
    assert f"sweep {broken['id']}: advancing it failed" in caplog.text
    assert client.get(f"/v1/sweeps/{working['id']}").get_json()["counts"]["queued"] == 2


def test_a_sweeps_model_is_announced_once(client, sessions, settings, dataset_id, monkeypatch):
    """The last trial's own model, registered under the sweep's name as it ends."""
    announced = []
    monkeypatch.setattr(
        training, "announce_version", lambda _settings, model: announced.append(model.id)
    )
    search = {"method": "grid", "parameters": {"training.l2": [0.0]}}
    sweep = create(client, sweep_body(dataset_id, search=search, model_name="xor-best"))
    shown = run_sweep(client, sessions, settings, sweep["id"])
    assert shown["status"] == "succeeded"
    assert announced == [shown["model_id"]]


def asha_body(dataset_id: int) -> dict:
    """9 trials one at a time, ranked by train loss, rungs at epochs 1, 3 and 9 of 12."""
    search = {
        "method": "grid",
        "parameters": {
            "training.optimizer.learning_rate": [0.001, 0.05, 0.5],
            "network.layers[0].units": [2, 4, 8],
        },
    }
    early = {"method": "asha", "min_epochs": 1, "reduction_factor": 3}
    return sweep_body(dataset_id, epochs=12, search=search, early_termination=early, max_parallel=1)


def stored_values(sessions, sweep_id: int, epoch: int, up_to_trial: int) -> list[float]:
    with sessions() as session:
        return list(
            session.scalars(
                select(EpochMetric.train_loss)
                .join(TrainingJob, TrainingJob.id == EpochMetric.job_id)
                .where(
                    TrainingJob.sweep_id == sweep_id,
                    TrainingJob.trial <= up_to_trial,
                    EpochMetric.epoch == epoch,
                )
            )
        )


@pytest.mark.parametrize("sessions", BACKENDS, indirect=True)
def test_asha_prunes_a_trial_exactly_when_the_rule_says(client, sessions, settings, dataset_id):
    sweep = create(client, asha_body(dataset_id))
    shown = run_sweep(client, sessions, settings, sweep["id"])
    assert shown["status"] == "succeeded"
    pruned = 0
    for entry in shown["leaderboard"]:
        # One trial at a time: those that reached a rung before this one are the earlier trials.
        for rung in entry["rungs"]:
            reached = stored_values(sessions, sweep["id"], rung["epoch"], entry["trial"])
            keep, cutoff = asha_rule(rung["value"], reached, "minimize", 3)
            assert (rung["cutoff"], rung["reached"], rung["pruned"]) == (
                cutoff,
                len(reached),
                not keep,
            )
        decided = [rung["epoch"] for rung in entry["rungs"]]
        assert decided == [epoch for epoch in (1, 3, 9) if epoch <= entry["epoch"]]
        if entry["status"] == "pruned":
            pruned += 1
            assert entry["rungs"][-1]["pruned"] and entry["epoch"] == decided[-1]
            assert entry["model_id"] is None
        else:
            assert entry["status"] == "succeeded" and entry["epoch"] == 12
            assert not any(rung["pruned"] for rung in entry["rungs"])
    assert pruned > 0
    assert shown["counts"]["pruned"] == pruned


def test_the_asha_rule():
    # Fewer than reduction_factor trials at the rung: continue, no cutoff yet.
    assert asha_rule(9.0, [1.0, 9.0], "minimize", 3) == (True, None)
    # 6 reached, the best 2 continue: the cutoff is the second best.
    values = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2]
    assert asha_rule(0.2, values, "minimize", 3) == (True, 0.2)
    assert asha_rule(0.3, values, "minimize", 3) == (False, 0.2)
    assert asha_rule(0.7, values, "maximize", 3) == (True, 0.7)
    assert asha_rule(0.5, values, "maximize", 3) == (False, 0.7)


def test_rungs_are_below_the_last_epoch():
    asha = Asha(1, "val_loss", "minimize", min_epochs=1, reduction_factor=3)
    assert [epoch for epoch in range(1, 28) if asha.is_rung(epoch, 27)] == [1, 3, 9]
    later = Asha(1, "val_loss", "minimize", min_epochs=5, reduction_factor=2)
    assert [epoch for epoch in range(1, 50) if later.is_rung(epoch, 50)] == [5, 10, 20, 40]


def test_sweeps_are_listed_without_their_leaderboards(client, dataset_id):
    first, second = create(client, sweep_body(dataset_id)), create(client, sweep_body(dataset_id))
    listed = client.get("/v1/sweeps").get_json()
    assert [sweep["id"] for sweep in listed] == [first["id"], second["id"]]
    assert "leaderboard" not in listed[0]
    assert client.get("/v1/sweeps/999").status_code == 404


def test_with_early_termination_a_grid_runs_in_a_seeded_shuffled_order(client, dataset_id):
    def trial_params(body: dict) -> list[dict]:
        sweep = create(client, body)
        client.post(f"/v1/sweeps/{sweep['id']}/cancel")
        shown = client.get(f"/v1/sweeps/{sweep['id']}").get_json()
        return [entry["params"] for entry in sorted(shown["leaderboard"], key=lambda e: e["trial"])]

    body = {**asha_body(dataset_id), "max_parallel": 9}
    shuffled = trial_params(body)
    assert trial_params(body) == shuffled
    # Flask's test client sends keys sorted: network.layers[0].units is the first parameter.
    grid = [
        {"training.optimizer.learning_rate": rate, "network.layers[0].units": units}
        for units in (2, 4, 8)
        for rate in (0.001, 0.05, 0.5)
    ]

    def key(params: dict) -> tuple:
        return tuple(sorted(params.items()))

    assert shuffled != grid and sorted(map(key, shuffled)) == sorted(map(key, grid))
    in_order = trial_params({**body, "early_termination": None})
    assert in_order == grid
