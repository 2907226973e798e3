"""Sweeps in the database: trials becoming jobs (at most ``max_parallel`` queued or running at
once), the end of a sweep (its best trial's model registered under its name), the figures early
termination compares (its rule is service/sweeps/asha.py), cancelling, and the figures the API
shows.

``advance`` runs in the transaction that ends a trial, so the worker that ends one queues the
next before anyone else can see the sweep with room to spare; the dispatcher calls it too, for
trials that ended without a worker (the reaper's, a cancel through /v1/jobs).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from model_core.specs import resolve_training
from service.db import registry, webhooks
from service.db.models import EpochMetric, Sweep, TrainedModel, TrainingJob, utcnow
from service.db.quotas import json_bytes
from service.db.records import get_dataset, page
from service.specs_json import plain_json, resolve_json, service_fields_apart, trial_body
from service.vocabulary import ACTIVE_STATUSES, JobStatus, SweepStatus


@dataclass(frozen=True)
class Advance:
    """What ending a trial did to its sweep: trials queued (to publish once committed), and the
    model registered as the next version of the sweep's name when it ended."""

    job_ids: tuple[int, ...] = ()
    registered: TrainedModel | None = None


def advance(session: Session, sweep_id: int) -> Advance:
    """Queue the sweep's next trials while fewer than ``max_parallel`` are queued or running,
    and end it when none is left; without committing. Two callers at once (workers ending
    trials, the dispatcher, a cancel) take turns: see ``lock_running``."""
    if not lock_running(session, sweep_id):
        return Advance()
    sweep = session.scalars(
        select(Sweep).where(Sweep.id == sweep_id).execution_options(populate_existing=True)
    ).one()
    active = count_active(session, sweep_id)
    new_jobs = []
    while sweep.next_trial < sweep.n_trials and active < sweep.max_parallel:
        new_jobs.append(trial_job(session, sweep, sweep.next_trial))
        sweep.next_trial += 1
        active += 1
    session.add_all(new_jobs)
    registered = None
    if active == 0 and sweep.next_trial == sweep.n_trials:
        registered = finish(session, sweep)
    session.flush()
    return Advance(tuple(job.id for job in new_jobs), registered)


def lock_running(session: Session, sweep_id: int) -> bool:
    """Lock the sweep's row when it is running, until the transaction ends; False when it is
    not running (any more). A write, not ``SELECT ... FOR UPDATE``: SQLite ignores FOR UPDATE
    and pysqlite opens its transaction only at the first write, so reading first would count
    trials outside any transaction and could queue one twice, or after a cancel committed."""
    locked = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.status == SweepStatus.RUNNING)
        .values(next_trial=Sweep.next_trial)
        .execution_options(synchronize_session=False)
    )
    return locked.rowcount == 1


def count_active(session: Session, sweep_id: int) -> int:
    active = (TrainingJob.sweep_id == sweep_id) & TrainingJob.status.in_(ACTIVE_STATUSES)
    return session.scalar(select(func.count(TrainingJob.id)).where(active))


def trial_job(session: Session, sweep: Sweep, index: int) -> TrainingJob:
    """Trial ``index + 1`` of ``sweep`` as a queued job."""
    spec = trial_specs(session, sweep, index)
    return TrainingJob(
        tenant=sweep.tenant,
        dataset_id=sweep.dataset_id,
        network=spec["network"],
        training=spec["training"],
        stored_bytes=json_bytes(spec["network"], None, spec["training"]),
        warnings=spec["warnings"],
        epochs=spec["training"]["epochs"],
        sweep_id=sweep.id,
        trial=index + 1,
        params=spec["params"],
        request_id=sweep.request_id,
    )


def trial_specs(session: Session, sweep: Sweep, index: int) -> dict:
    """Trial ``index + 1``'s specs ({params, network, training, warnings}): its parameters set
    into the sweep's base and resolved against the data set, as they were checked when the sweep
    was accepted. A sweep stored without a base (before migration 0010) holds them as they are.

    When the data set has been deleted since, only the training spec is resolved (it needs no
    data): the worker fails the job for its missing data set, as it would any job."""
    if sweep.base is None:
        return sweep.trials[index]
    params = sweep.trials[index]
    body = trial_body(sweep.base, params)
    dataset = None if sweep.dataset_id is None else get_dataset(session, sweep.dataset_id)
    if dataset is None:
        engine, own = service_fields_apart(body["training"])
        training = {**plain_json(resolve_training(engine)), **own}
        return {"params": params, "network": body["network"], "training": training, "warnings": []}
    resolved = resolve_json(dataset, body["network"], body["training"])
    return {
        "params": params,
        "network": resolved.network,
        "training": resolved.training,
        "warnings": resolved.warnings,
    }


def finish(session: Session, sweep: Sweep) -> TrainedModel | None:
    """End ``sweep``: succeeded with its best trial's model (registered as the next version of
    ``model_name``, if given, and returned), or failed when no trial has a model; with the
    ``sweep.finished`` event (and ``model.version.created``), uncommitted."""
    best = next((score for score in leaderboard(session, sweep) if score.job.model), None)
    sweep.finished_at = utcnow()
    model = None
    if best is None:
        sweep.status = SweepStatus.FAILED
    else:
        sweep.status = SweepStatus.SUCCEEDED
        sweep.best_job_id = best.job.id
        if sweep.model_name is not None:
            model = register_best(session, sweep, best.job.model)
    sweep_finished(session, sweep.tenant, sweep.id, sweep.status, best and best.job.model)
    return model


def register_best(session: Session, sweep: Sweep, model: TrainedModel) -> TrainedModel:
    """Make the sweep's best model the next version of its name (event included)."""
    # The name's row first: the model's foreign key points at it.
    version = registry.next_version(session, sweep.tenant, sweep.model_name)
    model.name, model.version = sweep.model_name, version
    webhooks.record_version_created(session, model)
    return model


def sweep_finished(
    session: Session,
    tenant: str,
    sweep_id: int,
    status: SweepStatus,
    best: TrainedModel | None,
) -> None:
    """Record the ``sweep.finished`` event, uncommitted."""
    data = {
        "sweep_id": sweep_id,
        "status": str(status),
        "best_job_id": best and best.job_id,
        "model_id": best and best.id,
        "name": best and best.name,
        "version": best and best.version,
    }
    webhooks.record_event(session, tenant, "sweep.finished", data)


@dataclass(frozen=True)
class Score:
    """A trial on the leaderboard: the sweep's metric at ``epoch``, the epoch whose weights its
    model holds (the best one when early stopping restored it, else the last one)."""

    job: TrainingJob
    epoch: int
    metric: float | None
    seconds: float


def model_epoch(job: TrainingJob) -> int:
    """The epoch whose weights the trial's model holds (its last epoch without a model)."""
    stopping = job.training.get("early_stopping")
    restored = isinstance(stopping, dict) and stopping.get("restore_best")
    if job.model is not None and restored:
        return job.model.metrics.get("best_epoch") or job.epoch
    return job.epoch


def leaderboard(session: Session, sweep: Sweep) -> list[Score]:
    """The sweep's trials that became jobs, best first on its metric (trials without a value
    last, then by trial number)."""
    jobs = list(
        session.scalars(
            select(TrainingJob).where(TrainingJob.sweep_id == sweep.id).order_by(TrainingJob.trial)
        )
    )
    epochs = {job.id: model_epoch(job) for job in jobs}
    values = metric_values(session, sweep.metric, list(epochs.items()))
    seconds = training_seconds(session, sweep.id)
    scores = [
        Score(job, epochs[job.id], values.get(job.id), seconds.get(job.id, 0.0)) for job in jobs
    ]
    sign = 1 if sweep.goal == "minimize" else -1
    return sorted(
        scores,
        key=lambda s: (s.metric is None, 0 if s.metric is None else sign * s.metric, s.job.trial),
    )


def metric_values(
    session: Session, metric: str, job_epochs: Sequence[tuple[int, int]]
) -> dict[int, float]:
    """``metric`` of each (job id, epoch) pair that has an epoch record, by job id."""
    pairs = [(job_id, epoch) for job_id, epoch in job_epochs if epoch]
    if not pairs:
        return {}
    column = getattr(EpochMetric, metric)
    rows = session.execute(
        select(EpochMetric.job_id, column).where(
            tuple_(EpochMetric.job_id, EpochMetric.epoch).in_(pairs)
        )
    )
    return {job_id: value for job_id, value in rows if value is not None}


def training_seconds(session: Session, sweep_id: int) -> dict[int, float]:
    """Seconds of training of each trial of the sweep (its epochs' own seconds), by job id."""
    rows = session.execute(
        select(EpochMetric.job_id, func.sum(EpochMetric.seconds))
        .join(TrainingJob, TrainingJob.id == EpochMetric.job_id)
        .where(TrainingJob.sweep_id == sweep_id)
        .group_by(EpochMetric.job_id)
    )
    return {job_id: float(total) for job_id, total in rows}


def status_counts(session: Session, sweep: Sweep) -> dict[str, int]:
    """How many trials are in each job status, and ``waiting`` (not yet a job), from one
    query: every trial that is a job is counted once, whatever became of it meanwhile (the
    sweep row read before could already be behind a trial queued since)."""
    rows = session.execute(
        select(TrainingJob.status, func.count())
        .where(TrainingJob.sweep_id == sweep.id)
        .group_by(TrainingJob.status)
    )
    counts = {status.value: 0 for status in JobStatus}
    counts.update({status.value: count for status, count in rows})
    return {"waiting": sweep.n_trials - sum(counts.values()), **counts}


def cancel_sweep(session: Session, sweep_id: int) -> bool:
    """End a running sweep as cancelled, its queued trials at once and its running ones at
    their next epoch; commit. False when the sweep is not running (any more)."""
    now = utcnow()
    tenant = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.status == SweepStatus.RUNNING)
        .values(status=SweepStatus.CANCELLED, finished_at=now)
        .returning(Sweep.tenant)
    ).scalar()
    if tenant is None:
        session.rollback()
        return False
    sweep_finished(session, tenant, sweep_id, SweepStatus.CANCELLED, None)
    trials = TrainingJob.sweep_id == sweep_id
    session.execute(
        update(TrainingJob)
        .where(trials, TrainingJob.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, finished_at=now)
    )
    session.execute(
        update(TrainingJob)
        .where(trials, TrainingJob.status == JobStatus.RUNNING)
        .values(cancel_requested=True)
    )
    session.commit()
    return True


def stalled_sweeps(session: Session) -> list[int]:
    """Running sweeps with room for a trial and trials left, or with none left and none
    active: those whose trials ended without a worker to advance them."""
    active = (
        select(func.count(TrainingJob.id))
        .where(TrainingJob.sweep_id == Sweep.id, TrainingJob.status.in_(ACTIVE_STATUSES))
        .scalar_subquery()
    )
    room = (active < Sweep.max_parallel) & or_(Sweep.next_trial < Sweep.n_trials, active == 0)
    return list(session.scalars(select(Sweep.id).where(Sweep.status == SweepStatus.RUNNING, room)))


def list_sweeps(session: Session, offset: int, limit: int) -> tuple[list[Sweep], int]:
    return page(session, select(Sweep).order_by(Sweep.id), offset, limit)


# --- Early termination (the rule itself is service/sweeps/asha.py) ----------------------------


def rung_values(session: Session, sweep_id: int, metric: str, epoch: int) -> list[float]:
    """The ``metric`` at ``epoch`` of every trial of the sweep that has recorded that epoch."""
    column = getattr(EpochMetric, metric)
    return list(
        session.scalars(
            select(column)
            .join(TrainingJob, TrainingJob.id == EpochMetric.job_id)
            .where(
                TrainingJob.sweep_id == sweep_id,
                EpochMetric.epoch == epoch,
                column.is_not(None),
            )
        )
    )


def epoch_value(session: Session, job_id: int, metric: str, epoch: int) -> float | None:
    """The job's stored ``metric`` at ``epoch``; None when not stored."""
    return session.scalar(
        select(getattr(EpochMetric, metric)).where(
            EpochMetric.job_id == job_id, EpochMetric.epoch == epoch
        )
    )
