"""Alembic: upgrade from empty to head and back down to base, on SQLite and PostgreSQL."""

import json

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Text, cast, func, inspect, select, text

from model_core import Trainer
from service.commands.cli import main
from service.datasets.samples import load_sample
from service.db import records, registry
from service.db.models import (
    Base,
    Dataset,
    DatasetBlob,
    EpochMetric,
    JobCheckpoint,
    ModelAlias,
    Sweep,
    TrainedModel,
    TrainingJob,
)
from service.db.npz import arrays_to_npz
from service.db.session import make_engine, make_session_factory
from service.vocabulary import Task
from tests.factories import add_epochs, queued_xor_job

IRIS_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("empty_postgres_url")


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def schema_differences(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_matches_the_models_and_downgrade_removes_everything(
    database_url, monkeypatch, tmp_path
):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    assert main(["db", "upgrade"]) == 0
    assert {"datasets", "training_jobs", "epoch_metrics", "models"} <= tables(database_url)
    assert schema_differences(database_url) == []
    assert main(["db", "downgrade", "base"]) == 0
    assert tables(database_url) <= {"alembic_version"}


@pytest.mark.parametrize(
    ("table", "column"),
    [("job_checkpoints", "blob"), ("dataset_arrays", "arrays"), ("models", "blob")],
)
def test_blobs_are_stored_uncompressed_on_postgresql(monkeypatch, tmp_path, request, table, column):
    url = request.getfixturevalue("empty_postgres_url")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    assert main(["db", "upgrade"]) == 0
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            storage = connection.exec_driver_sql(
                "SELECT attstorage FROM pg_attribute "
                f"WHERE attrelid = '{table}'::regclass AND attname = '{column}'"
            ).scalar()
    finally:
        engine.dispose()
    assert storage == "e"  # EXTERNAL: out of line, not compressed
    assert main(["db", "downgrade", "base"]) == 0


def test_ids_are_never_reused_on_sqlite_after_every_migration(monkeypatch, tmp_path):
    """Every table whose model asks for AUTOINCREMENT keeps it through the migrations (batch
    mode rebuilds tables, and reflection alone would drop it): caches are keyed by id."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    assert main(["db", "upgrade"]) == 0
    keeping = {
        table.name
        for table in Base.metadata.tables.values()
        if table.kwargs.get("sqlite_autoincrement")
    }
    assert {"datasets", "training_jobs", "models"} <= keeping
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
            )
            created = {name: sql for name, sql in rows}
    finally:
        engine.dispose()
    assert {name for name in keeping if "AUTOINCREMENT" not in created[name]} == set()


def count_rows(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
                for table in (
                    "datasets",
                    "training_jobs",
                    "epoch_metrics",
                    "models",
                    "model_aliases",
                )
            } | {
                "jobs with a data set": connection.exec_driver_sql(
                    "SELECT count(*) FROM training_jobs WHERE dataset_id IS NOT NULL"
                ).scalar()
            }
    finally:
        engine.dispose()


def test_a_downgrade_and_an_upgrade_keep_every_row(database_url, monkeypatch, tmp_path):
    """Batch mode rebuilds tables on SQLite: with foreign keys on, dropping the old jobs table
    would cascade to every model and epoch record (migrations/env.py turns them off)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    assert main(["db", "upgrade"]) == 0
    sessions = make_session_factory(database_url)
    job_id = queued_xor_job(sessions)
    add_epochs(sessions, job_id, range(1, 4))
    with sessions() as session:
        job = session.get(TrainingJob, job_id)
        session.add(
            TrainedModel(
                job_id=job_id,
                dataset_id=job.dataset_id,
                task=Task.CLASSIFICATION,
                n_features=2,
                network={},
                training={},
                metrics={},
                signature={"named": False, "task": "classification", "inputs": [], "outputs": {}},
                blob=b"x",
                name="xor",
                version=registry.next_version(session, "default", "xor"),
            )
        )
        session.flush()
        session.add(ModelAlias(name="xor", alias="production", version=1))
        session.commit()
    sessions.kw["bind"].dispose()
    before = count_rows(database_url)
    assert before == {
        "datasets": 1,
        "training_jobs": 1,
        "epoch_metrics": 3,
        "models": 1,
        "model_aliases": 1,
        "jobs with a data set": 1,
    }
    assert main(["db", "downgrade", "0004"]) == 0
    assert count_rows(database_url) == before
    assert main(["db", "upgrade"]) == 0
    assert count_rows(database_url) == before
    assert main(["db", "downgrade", "base"]) == 0


def database_lengths(sessions, columns: dict) -> dict[str, tuple[int, int]]:
    """(stored_bytes, the bytes the database holds in the row's ``columns``) of each table's one
    row."""
    found = {}
    with sessions() as session:
        for model, counted in columns.items():
            held = sum(
                session.scalar(select(func.coalesce(func.length(cast(c, Text)), 0)))
                for c in counted
            )
            found[model.__tablename__] = (session.scalar(select(model.stored_bytes)), held)
    return found


def test_0008_counts_the_bytes_of_the_rows_already_stored(database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    assert main(["db", "upgrade"]) == 0
    sessions = make_session_factory(database_url)
    job_id = queued_xor_job(sessions)
    with sessions() as session:
        session.add(JobCheckpoint(job_id=job_id, attempt=1, epoch=1, blob=b"x" * 3000))
        trials = [{"params": {"training.l2": 0.1}, "network": {"layers": []}, "training": {}}]
        session.add(
            Sweep(
                search={"method": "grid"},
                metric="train_loss",
                goal="minimize",
                max_parallel=1,
                n_trials=1,
                trials=trials,
            )
        )
        session.commit()
    assert main(["db", "downgrade", "0007"]) == 0
    assert main(["db", "upgrade"]) == 0
    lengths = database_lengths(
        sessions,
        {
            TrainingJob: (TrainingJob.network, TrainingJob.initial_weights, TrainingJob.training),
            Sweep: (Sweep.search, Sweep.trials),
        },
    )
    assert all(stored == held > 0 for stored, held in lengths.values()), lengths
    with sessions() as session:
        assert session.scalar(select(JobCheckpoint.stored_bytes)) == 3000
    sessions.kw["bind"].dispose()
    assert main(["db", "downgrade", "base"]) == 0


def test_0010_keeps_the_sweeps_stored_with_every_trials_specs(database_url, monkeypatch, tmp_path):
    """A sweep stored before 0010 keeps its trials as they are, with no base: it is read as
    every trial's resolved specs (service.db.sweeps.trial_specs)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    assert main(["db", "upgrade", "0009"]) == 0
    trials = [{"params": {"training.l2": 0.1}, "network": {"layers": []}, "training": {}}]
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO sweeps (tenant, status, search, metric, goal, max_parallel, n_trials,"
            " next_trial, trials, stored_bytes, created_at) VALUES ('default', 'running',"
            f" '{{}}', 'train_loss', 'minimize', 1, 1, 0, '{json.dumps(trials)}', 0,"
            " CURRENT_TIMESTAMP)"
        )
    engine.dispose()
    assert main(["db", "upgrade"]) == 0
    sessions = make_session_factory(database_url)
    with sessions() as session:
        sweep = session.scalars(select(Sweep)).one()
        assert (sweep.base, sweep.trials) == (None, trials)
    sessions.kw["bind"].dispose()
    assert main(["db", "downgrade", "base"]) == 0


def stored_before_0011(database_url: str, validation_split: float) -> tuple[int, np.ndarray]:
    """The iris sample with named features, a job on it, and two models stored as 0010 stored
    them: one trained on the data set (``validation_split`` of it held out), and one whose data
    set is gone. Returns the data set's id and the rows the first model trained on."""
    sample = load_sample("iris")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        dataset_id = connection.execute(
            text(
                "INSERT INTO datasets (tenant, name, task, source, n_samples, n_features,"
                " n_outputs, feature_names, classes, arrays, stored_bytes, created_at) VALUES"
                " ('default', 'iris', 'classification', 'sample', 150, 4, 3, :names, :classes,"
                " :arrays, 0, CURRENT_TIMESTAMP) RETURNING id"
            ),
            {
                "names": json.dumps(IRIS_NAMES),
                "classes": json.dumps(IRIS_CLASSES),
                "arrays": arrays_to_npz(X=sample.X, y=sample.y),
            },
        ).scalar_one()
        job_ids = [
            connection.execute(
                text(
                    "INSERT INTO training_jobs (tenant, dataset_id, status, attempt, network,"
                    " training, warnings, epoch, epochs, created_at, cancel_requested,"
                    " stored_bytes) VALUES ('default', :dataset, 'succeeded', 1, '{}', '{}',"
                    " '[]', 1, 1, CURRENT_TIMESTAMP, false, 0) RETURNING id"
                ),
                {"dataset": dataset_id},
            ).scalar_one()
            for _ in "ab"
        ]
    network = {"layers": [{"units": 3, "activation": "softmax"}], "dtype": "float64"}
    training = {"epochs": 1, "seed": 9, "validation_split": validation_split}
    trainer = Trainer(sample.X, sample.y, network, training)
    blob = trainer.fit().model.to_bytes()
    insert = text(
        "INSERT INTO models (tenant, job_id, dataset_id, task, n_features, network, training,"
        " classes, metrics, blob, stored_bytes, created_at) VALUES ('default', :job, :dataset,"
        " 'classification', 4, :network, '{}', :classes, '{}', :blob, 0, CURRENT_TIMESTAMP)"
    )
    classes = json.dumps(IRIS_CLASSES)
    with engine.begin() as connection:
        for job_id, dataset in zip(job_ids, (dataset_id, None), strict=True):
            values = {"job": job_id, "dataset": dataset, "classes": classes, "blob": blob}
            connection.execute(insert, {**values, "network": json.dumps(network)})
    engine.dispose()
    return dataset_id, sample.X[trainer.train_rows]


def test_0011_gives_stored_models_a_signature_from_their_data_set(
    database_url, monkeypatch, tmp_path
):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    assert main(["db", "upgrade", "0010"]) == 0
    _, trained_rows = stored_before_0011(database_url, validation_split=0.2)
    assert main(["db", "upgrade"]) == 0
    sessions = make_session_factory(database_url)
    with sessions() as session:
        kept, orphan = session.scalars(select(TrainedModel).order_by(TrainedModel.id)).all()
        kept, orphan = kept.signature, orphan.signature
    sessions.kw["bind"].dispose()
    assert kept["named"] is True and kept["task"] == "classification"
    assert [feature["name"] for feature in kept["inputs"]] == IRIS_NAMES
    assert kept["outputs"] == {"classes": ["setosa", "versicolor", "virginica"], "type": "string"}
    np.testing.assert_allclose([f["mean"] for f in kept["inputs"]], trained_rows.mean(axis=0))
    assert [f["max"] for f in kept["inputs"]] == trained_rows.max(axis=0).tolist()
    assert {f["dtype"] for f in kept["inputs"]} == {"float64"}
    assert orphan["named"] is False
    assert [(f["name"], f["mean"]) for f in orphan["inputs"]] == [(f"x{i}", None) for i in range(4)]
    assert orphan["outputs"] == kept["outputs"]
    assert main(["db", "downgrade", "0010"]) == 0
    assert main(["db", "downgrade", "base"]) == 0


def test_0013_reads_the_rows_stored_before_as_unweighted_and_parentless(
    database_url, monkeypatch, tmp_path
):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    assert main(["db", "upgrade", "0010"]) == 0
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO datasets (tenant, name, task, source, n_samples, n_features, n_outputs,"
            " arrays, stored_bytes, created_at) VALUES ('default', 'old', 'classification',"
            " 'json', 4, 2, 2, '', 0, CURRENT_TIMESTAMP)"
        )
    engine.dispose()
    assert main(["db", "upgrade"]) == 0
    sessions = make_session_factory(database_url)
    with sessions() as session:
        assert session.scalars(select(Dataset.weighted)).one() is False
    sessions.kw["bind"].dispose()
    assert main(["db", "downgrade", "0010"]) == 0
    assert main(["db", "downgrade", "base"]) == 0


def test_0012_keeps_the_epoch_records_stored_without_a_learning_rate(
    database_url, monkeypatch, tmp_path
):
    """A downgrade drops the column and keeps the records; upgraded again, they read as NULL
    rates, as records stored before 0012 do."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    assert main(["db", "upgrade"]) == 0
    sessions = make_session_factory(database_url)
    job_id = queued_xor_job(sessions)
    add_epochs(sessions, job_id, range(1, 3))
    sessions.kw["bind"].dispose()
    assert main(["db", "downgrade", "0011"]) == 0
    assert count_rows(database_url)["epoch_metrics"] == 2
    assert main(["db", "upgrade"]) == 0
    sessions = make_session_factory(database_url)
    with sessions() as session:
        rates = session.scalars(select(EpochMetric.learning_rate).order_by(EpochMetric.epoch))
        assert list(rates) == [None, None]
    sessions.kw["bind"].dispose()
    assert main(["db", "downgrade", "base"]) == 0


def stored_before_0018(database_url: str, arrays: bytes) -> int:
    """A data set stored as 0017 stored it, its ``arrays`` in its row, and a job on it;
    returns the data set's id."""
    engine = make_engine(database_url)
    with engine.begin() as connection:
        dataset_id = connection.execute(
            text(
                "INSERT INTO datasets (tenant, name, task, source, n_samples, n_features,"
                " n_outputs, classes, weighted, arrays, stored_bytes, created_at) VALUES"
                " ('default', 'iris', 'classification', 'sample', 150, 4, 3, :classes, false,"
                " :arrays, :size, CURRENT_TIMESTAMP) RETURNING id"
            ),
            {"classes": json.dumps(IRIS_CLASSES), "arrays": arrays, "size": len(arrays)},
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO training_jobs (tenant, dataset_id, status, attempt, network,"
                " training, warnings, epoch, epochs, created_at, cancel_requested,"
                " stored_bytes) VALUES ('default', :dataset, 'queued', 0, '{}', '{}',"
                " '[]', 0, 1, CURRENT_TIMESTAMP, false, 0)"
            ),
            {"dataset": dataset_id},
        )
    engine.dispose()
    return dataset_id


def test_0018_moves_the_arrays_to_their_own_table_and_back(database_url, monkeypatch, tmp_path):
    """Arrays stored in ``datasets`` before 0018 are read from ``dataset_arrays`` after it,
    byte for byte, and go back to ``datasets`` on a downgrade; the models' foreign keys hold
    through SQLite's rebuild of the table."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    assert main(["db", "upgrade", "0017"]) == 0
    sample = load_sample("iris")
    stored = arrays_to_npz(X=sample.X, y=sample.y)
    dataset_id = stored_before_0018(database_url, stored)
    before = count_rows(database_url)
    assert (before["datasets"], before["jobs with a data set"]) == (1, 1)
    assert main(["db", "upgrade", "0018"]) == 0
    assert count_rows(database_url) == before
    sessions = make_session_factory(database_url)
    with sessions() as session:
        x, y, weights = records.get_dataset_arrays(session, dataset_id)
        assert session.get(DatasetBlob, dataset_id).arrays == stored
    sessions.kw["bind"].dispose()
    np.testing.assert_array_equal(x, sample.X)
    np.testing.assert_array_equal(y, sample.y)
    assert weights is None
    assert main(["db", "downgrade", "0017"]) == 0
    assert count_rows(database_url) == before
    engine = make_engine(database_url)
    with engine.connect() as connection:
        arrays = connection.execute(
            text("SELECT arrays FROM datasets WHERE id = :id"), {"id": dataset_id}
        ).scalar_one()
    engine.dispose()
    assert bytes(arrays) == stored
    assert main(["db", "downgrade", "base"]) == 0
