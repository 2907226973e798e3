"""run_training on a real SQLite database: history, the stored model, and every failure path."""

import numpy as np
import pytest
from sqlalchemy import select

from model_core import Model
from service.datasets.ingest import build_dataset
from service.db import attempts, records
from service.db.models import Dataset, EpochMetric, TrainedModel, TrainingJob
from service.settings import Settings
from service.vocabulary import JobStatus, Task
from tests.factories import queued_xor_job
from worker import training
from worker.training import run_training


def epochs_of(sessions, job_id: int) -> list[int]:
    with sessions() as session:
        return list(
            session.scalars(
                select(EpochMetric.epoch)
                .where(EpochMetric.job_id == job_id)
                .order_by(EpochMetric.id)
            )
        )


def job_row(sessions, job_id: int) -> TrainingJob:
    with sessions() as session:
        return session.get(TrainingJob, job_id)


def test_a_job_trains_and_stores_history_and_model(sessions):
    job_id = queued_xor_job(sessions, epochs=400)
    assert run_training(sessions, job_id) is JobStatus.SUCCEEDED
    job = job_row(sessions, job_id)
    assert (job.status, job.attempt, job.epoch, job.train_accuracy) == ("succeeded", 1, 400, 1.0)
    assert job.started_at <= job.finished_at
    assert epochs_of(sessions, job_id) == list(range(1, 401))
    with sessions() as session:
        model = session.scalars(select(TrainedModel).where(TrainedModel.job_id == job_id)).one()
        engine_model = Model.from_bytes(model.blob)
    assert model.classes == [0, 1] and model.metrics["epochs_trained"] == 400
    assert engine_model.predict(np.array([[0, 0], [0, 1], [1, 0], [1, 1]])).tolist() == [0, 1, 1, 0]


def test_a_second_delivery_trains_nothing(sessions):
    job_id = queued_xor_job(sessions, epochs=20)
    run_training(sessions, job_id)
    assert run_training(sessions, job_id) is None
    assert epochs_of(sessions, job_id) == list(range(1, 21))
    assert job_row(sessions, job_id).attempt == 1


def test_epochs_are_written_in_batches_not_one_round_trip_each(sessions, monkeypatch):
    batches = []
    real_record_progress = attempts.record_progress

    def spy(session, job_id, attempt, records, checkpoint):
        batches.append(len(records))
        return real_record_progress(session, job_id, attempt, records, checkpoint)

    monkeypatch.setattr(attempts, "record_progress", spy)
    job_id = queued_xor_job(sessions, epochs=3000)
    run_training(sessions, job_id, Settings(metrics_flush_seconds=0.05))
    assert len(batches) < 100 and sum(batches) <= 3000
    assert epochs_of(sessions, job_id) == list(range(1, 3001))


def test_progress_is_visible_while_the_job_runs(sessions, monkeypatch):
    seen = []
    real_end = attempts.end_attempt

    def look_then_end(session, job_id, attempt, records, *args):
        seen.append((job_row(sessions, job_id).epoch, len(epochs_of(sessions, job_id))))
        return real_end(session, job_id, attempt, records, *args)

    monkeypatch.setattr(attempts, "end_attempt", look_then_end)
    job_id = queued_xor_job(sessions, epochs=50)
    run_training(sessions, job_id, Settings(metrics_flush_seconds=0.0))
    assert seen == [(50, 50)]


def regression_job(sessions, learning_rate: float) -> int:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)) * 100
    network = {"layers": [{"units": 8, "activation": "relu"}, {"units": 1, "activation": "linear"}]}
    training_spec = {
        "epochs": 50,
        "batch_size": "full",
        "standardize": False,
        "seed": 1,
        "optimizer": {"name": "sgd", "learning_rate": learning_rate},
    }
    with sessions() as session:
        packed = build_dataset(
            name="wide",
            task=Task.REGRESSION,
            source="json",
            x=x,
            y=x @ [1.0, 2.0, 3.0],
            target_field="targets",
        )
        with packed:
            dataset = records.add_dataset(session, packed.row, packed.npz)
        job = TrainingJob(dataset_id=dataset.id, network=network, training=training_spec, epochs=50)
        session.add(job)
        session.commit()
        return job.id


def test_divergence_fails_the_job_with_its_message_and_keeps_history(sessions):
    job_id = regression_job(sessions, learning_rate=1.0)
    assert run_training(sessions, job_id, Settings(metrics_flush_seconds=60)) is JobStatus.FAILED
    job = job_row(sessions, job_id)
    assert job.status == "failed" and "diverged at epoch 3" in job.error
    assert epochs_of(sessions, job_id) == [1, 2]
    with sessions() as session:
        assert session.scalars(select(TrainedModel)).all() == []


def test_a_spec_error_at_training_time_fails_the_job(sessions):
    network = {
        "layers": [{"units": 4, "activation": "sigmod"}, {"units": 2, "activation": "softmax"}]
    }
    job_id = queued_xor_job(sessions, network=network)
    assert run_training(sessions, job_id) is JobStatus.FAILED
    assert "sigmod" in job_row(sessions, job_id).error


def test_a_job_whose_data_set_was_deleted_fails_saying_so(sessions):
    job_id = queued_xor_job(sessions)
    with sessions() as session:
        session.delete(session.get(TrainingJob, job_id).dataset)
        session.commit()
    assert run_training(sessions, job_id) is JobStatus.FAILED
    assert "data set was deleted" in job_row(sessions, job_id).error


def test_an_unexpected_error_fails_the_job_and_is_raised(sessions, monkeypatch):
    def broken_train(*_args, **_kwargs):
        raise MemoryError("no room")

    monkeypatch.setattr(training, "Trainer", broken_train)
    job_id = queued_xor_job(sessions)
    with pytest.raises(MemoryError):
        run_training(sessions, job_id)
    assert job_row(sessions, job_id).error == "internal error: MemoryError: no room"


def test_a_stale_attempt_cannot_write(sessions):
    job_id = queued_xor_job(sessions)
    with sessions() as session:
        attempt = attempts.claim_job(session, job_id, "me", 15, 3).attempt
        session.get(TrainingJob, job_id).attempt = attempt + 1
        session.commit()
        record = {
            "epoch": 1,
            "train_loss": 1.0,
            "val_loss": None,
            "train_accuracy": 0.5,
            "val_accuracy": None,
            "learning_rate": 0.1,
            "seconds": 0.1,
        }
        with pytest.raises(attempts.StaleAttempt):
            attempts.record_progress(session, job_id, attempt, [record])
    assert epochs_of(sessions, job_id) == []


def test_arrays_are_stored_without_pickle(sessions):
    queued_xor_job(sessions)
    with sessions() as session:
        dataset = session.scalars(select(Dataset)).one()
        x, y, weights = records.get_dataset_arrays(session, dataset.id)
    assert x.dtype.kind == "f" and y.dtype.kind == "i" and weights is None


def test_a_process_reads_a_data_set_once_across_jobs(sessions, monkeypatch):
    reads = []
    real_read = records.get_dataset_arrays
    monkeypatch.setattr(
        records, "get_dataset_arrays", lambda s, i: reads.append(i) or real_read(s, i)
    )
    cache = training.arrays_cache(10**6)
    first = queued_xor_job(sessions, epochs=5)
    with sessions() as session:
        job = session.get(TrainingJob, first)
        second = TrainingJob(
            dataset_id=job.dataset_id, network=job.network, training=job.training, epochs=5
        )
        session.add(second)
        session.commit()
        second_id = second.id
    for job_id in (first, second_id):
        assert run_training(sessions, job_id, cache=cache) is JobStatus.SUCCEEDED
    assert len(reads) == 1


def test_given_initial_weights_reach_the_engine(sessions):
    weights = [
        {"W": [[0.5, -0.5, 0.25, 0.0], [0.1, 0.2, 0.3, 0.4]], "b": [0.0, 0.1, 0.2, 0.3]},
        {"W": [[1.0, -1.0]] * 4, "b": [0.0, 0.0]},
    ]
    job_id = queued_xor_job(sessions, epochs=1)
    with sessions() as session:
        job = session.get(TrainingJob, job_id)
        job.initial_weights = weights
        job.training = {**job.training, "optimizer": {"name": "sgd", "learning_rate": 1e-9}}
        session.commit()
    run_training(sessions, job_id)
    with sessions() as session:
        blob = session.scalars(select(TrainedModel.blob).where(TrainedModel.job_id == job_id)).one()
    first_w, _ = Model.from_bytes(blob).weights[0]
    assert np.allclose(first_w, weights[0]["W"], atol=1e-6)


def test_a_receiver_of_attempt_started_sees_the_claimed_attempt_and_its_data_set(sessions):
    seen = []

    def observe(sender, attempt, given, **_details):
        seen.append((attempt, given.job.id, given.dataset.name))

    job_id = queued_xor_job(sessions, epochs=2)
    training.attempt_started.connect(observe)
    try:
        assert run_training(sessions, job_id) is JobStatus.SUCCEEDED
    finally:
        training.attempt_started.disconnect(observe)
    assert seen == [(1, job_id, "xor")]


def test_the_trainer_gets_train_threads_from_the_settings(sessions, monkeypatch):
    threads = []
    real_trainer = training.Trainer

    def spy(*args, **kwargs):
        threads.append(kwargs["threads"])
        return real_trainer(*args, **kwargs)

    monkeypatch.setattr(training, "Trainer", spy)
    job_id = queued_xor_job(sessions, epochs=2)
    assert run_training(sessions, job_id, Settings(train_threads=2)) is JobStatus.SUCCEEDED
    assert threads == [2]
