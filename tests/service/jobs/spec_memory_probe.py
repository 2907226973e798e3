"""Run as ``python -m tests.service.jobs.spec_memory_probe``, in a process of its own: every
spec the service's dry run (``POST /v1/jobs/validate``'s ``check_job``) accepts under
MAX_JOB_MEMORY=64 MiB and MAX_REQUEST_MEMORY=32 MiB trains one epoch as the worker does and
predicts 1,000 rows within those bounds, the peak RSS measured for each example.

Prints one JSON line: how many examples were accepted and refused, and the largest growth.
A failing example makes hypothesis shrink it and the process exit non-zero with its spec.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_core import Model, Trainer, TrainingDiverged
from model_core.activations import ACTIVATIONS
from model_core.optimizers import OPTIMIZERS
from model_core.specs import DTYPES
from service.datasets.ingest import DataLimits, dataset_from_json
from service.db import records
from service.jobs.specs import SpecReport, check_job
from service.serving.predictions import prediction_arrays
from service.settings import Settings
from service.specs_json import service_fields_apart
from service.vocabulary import Task
from tests.factories import forget_peak_rss, peak_rss_growth_mb, sqlite_sessions

MIB = 1024 * 1024
SETTINGS = Settings(max_job_memory=64 * MIB, max_request_memory=32 * MIB)
LIMITS = DataLimits(SETTINGS.max_dataset_rows, SETTINGS.max_dataset_cells, SETTINGS.max_label_chars)
PREDICT_ROWS = 1000
# What each phase may add to the peak RSS beyond its limit (MAX_JOB_MEMORY to train,
# MAX_REQUEST_MEMORY to predict): what the cost model leaves out (a batch's copy of its rows,
# the loss's and the initializer's temporaries, the 1,000 rows and the answer), numpy's and the
# allocator's own.
SLACK_MB = 16
LIMITS_MB = {
    "train": SETTINGS.max_job_memory / MIB,
    "predict": SETTINGS.max_request_memory / MIB,
}

HIDDEN_ACTIVATIONS = sorted(name for name in ACTIVATIONS if name != "softmax")


@st.composite
def data_shapes(draw) -> tuple[Task, int, int, int]:
    """A task, rows, features, and classes (classification) or targets (regression)."""
    task = draw(st.sampled_from(list(Task)))
    n_rows = draw(st.integers(10, 1500))
    n_features = draw(st.integers(1, 64))
    n_outputs = draw(st.integers(2, 10) if task is Task.CLASSIFICATION else st.integers(1, 3))
    return task, n_rows, n_features, n_outputs


@st.composite
def networks(draw, n_outputs: int) -> dict:
    """Up to 3 hidden layers of up to 3,000 units, and an output layer of ``n_outputs``."""
    hidden = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "units": st.integers(1, 3000),
                    "activation": st.sampled_from(HIDDEN_ACTIVATIONS),
                    "dropout": st.sampled_from([0.0, 0.5]),
                }
            ),
            max_size=3,
        )
    )
    output = {"units": n_outputs, "activation": draw(st.sampled_from(sorted(ACTIVATIONS)))}
    return {"layers": [*hidden, output], "dtype": draw(st.sampled_from(DTYPES))}


def trainings() -> st.SearchStrategy[dict]:
    """One epoch, any batch size (``full`` too), any optimizer, with or without early stopping."""
    optimizer = st.one_of(
        st.just({"name": "sgd", "momentum": 0.9}),
        st.builds(lambda name: {"name": name}, st.sampled_from(sorted(OPTIMIZERS))),
    )
    return st.fixed_dictionaries(
        {
            "epochs": st.just(1),
            "seed": st.just(0),
            "batch_size": st.one_of(st.just("full"), st.integers(1, 2000)),
            "optimizer": optimizer,
        },
        optional={"early_stopping": st.just({"patience": 1}), "validation_split": st.just(0.2)},
    )


def synthetic_dataset(task: Task, n_rows: int, n_features: int, n_outputs: int):
    """Random features, and targets of ``n_outputs`` classes or columns."""
    rng = np.random.default_rng(n_rows * 100 + n_features)
    features = rng.normal(size=(n_rows, n_features)).tolist()
    if task is Task.CLASSIFICATION:
        targets = (np.arange(n_rows) % n_outputs).tolist()
    else:
        targets = rng.normal(size=(n_rows, n_outputs)).squeeze(axis=1 if n_outputs == 1 else None)
        targets = targets.tolist()
    return dataset_from_json("probe", task, features, targets, LIMITS)


class Probe:
    """The examples' outcomes: how many were refused, trained and predicted, and the largest
    growth of each phase's peak RSS."""

    def __init__(self, sessions) -> None:
        self.sessions = sessions
        self.counts = {"refused": 0, "trained": 0, "diverged": 0}
        self.largest_mb = {"train": 0.0, "predict": 0.0}

    def check(self, shape: tuple[Task, int, int, int], network: dict, training: dict) -> None:
        with self.sessions() as session:
            with synthetic_dataset(*shape) as packed:
                dataset = records.add_dataset(session, packed.row, packed.npz)
            report = check_job(
                session, SETTINGS, dataset_id=dataset.id, network=network, training=training
            )
            if not report.valid:
                self.counts["refused"] += 1
                return
            model = self.measured("train", train_one_epoch, session, dataset, report)
        if model is None:
            self.counts["diverged"] += 1
            return
        self.counts["trained"] += 1
        self.measured("predict", predict_rows, model, dataset.n_features)

    def measured(self, phase: str, function, *args):
        """``function(*args)``, its growth of the peak RSS checked against ``phase``'s limit
        plus the slack."""
        before = forget_peak_rss()
        result = function(*args)
        growth = peak_rss_growth_mb(before)
        self.largest_mb[phase] = max(self.largest_mb[phase], growth)
        bound = LIMITS_MB[phase] + SLACK_MB
        assert growth < bound, (
            f"{phase}: the peak RSS rose {growth:.1f} MiB; the bound is {bound:.1f}"
        )
        return result


def train_one_epoch(session, dataset, report: SpecReport) -> Model | None:
    """What the worker does with an accepted job: its data set's stored arrays, the specs with
    every default filled in; the trained model, or None when training diverged (the job fails
    with its message)."""
    x, y, _weights = records.get_dataset_arrays(session, dataset.id)
    engine, _own = service_fields_apart(report.training)
    network = {**report.network, "initial_weights": None}
    trainer = Trainer(x, y, network, engine, task=dataset.task.value)
    try:
        return trainer.fit(None).model
    except TrainingDiverged:
        return None


def predict_rows(model: Model, n_features: int) -> None:
    """A prediction of ``PREDICT_ROWS`` rows in chunks within MAX_REQUEST_MEMORY."""
    rows = np.random.default_rng(1).normal(size=(PREDICT_ROWS, n_features))
    prediction_arrays(model, rows, SETTINGS.max_request_memory, "instances")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        probe = Probe(sqlite_sessions(Path(folder) / "probe.db"))

        @settings(
            max_examples=50,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(st.data())
        def accepted_specs_fit(data) -> None:
            shape = data.draw(data_shapes())
            probe.check(shape, data.draw(networks(shape[3])), data.draw(trainings()))

        accepted_specs_fit()
    print(json.dumps({**probe.counts, "largest_mb": probe.largest_mb}))


if __name__ == "__main__":
    sys.exit(main())
