"""What ``/metrics`` reads from the database at scrape time: jobs, the queue, training speed,
retries and leases, webhook deliveries, as plain numbers across every tenant.

Read from the database rather than counted in the processes that do the work, so that workers
and dispatchers on every host are included, and nothing is lost when one of them dies. Use a
session opened without a tenant (service/db/tenancy.py): the figures span tenants.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import Dataset, EpochMetric, TrainingJob, WebhookDelivery
from service.vocabulary import DeliveryStatus, JobStatus


@dataclass(frozen=True)
class TrainingSpeed:
    """Summed over running jobs, each at the pace of its latest recorded epoch."""

    epochs_per_second: float
    samples_per_second: float


@dataclass(frozen=True)
class JobFigures:
    """``jobs``: how many jobs are in each status; ``retries``: attempts after the first, over
    every stored job (each follows a lease that expired); ``expired_leases``: running jobs whose
    lease has expired and that no one has re-queued or claimed yet; ``dispatch_lag_seconds``: age
    of the oldest job never sent to the broker (0 when none waits)."""

    jobs: dict[JobStatus, int]
    retries: int
    expired_leases: int
    dispatch_lag_seconds: float
    speed: TrainingSpeed


def job_figures(session: Session, now: datetime) -> JobFigures:
    return JobFigures(
        jobs=jobs_by_status(session),
        retries=retries(session),
        expired_leases=expired_leases(session, now),
        dispatch_lag_seconds=dispatch_lag_seconds(session, now),
        speed=training_speed(session),
    )


def jobs_by_status(session: Session) -> dict[JobStatus, int]:
    """Every status, with 0 for those no job has."""
    counts = dict.fromkeys(JobStatus, 0)
    rows = session.execute(
        select(TrainingJob.status, func.count()).group_by(TrainingJob.status)
    ).all()
    counts.update({status: count for status, count in rows})
    return counts


def retries(session: Session) -> int:
    total = session.scalar(select(func.sum(TrainingJob.attempt - 1)).where(TrainingJob.attempt > 1))
    return int(total or 0)


def expired_leases(session: Session, now: datetime) -> int:
    return session.scalar(
        select(func.count()).where(
            TrainingJob.status == JobStatus.RUNNING, TrainingJob.lease_expires_at < now
        )
    )


def dispatch_lag_seconds(session: Session, now: datetime) -> float:
    """Age of the oldest queued job the broker never got: a publish that failed at submission
    waits for the dispatcher. Re-queued jobs (attempt > 0) are left out: their creation time
    says nothing about when they were re-queued."""
    oldest = session.scalar(
        select(func.min(TrainingJob.created_at)).where(
            TrainingJob.status == JobStatus.QUEUED,
            TrainingJob.dispatched_at.is_(None),
            TrainingJob.attempt == 0,
        )
    )
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


def training_speed(session: Session) -> TrainingSpeed:
    """Epochs and training rows per second of the running jobs, from each one's latest epoch
    record (its seconds) and its data set's rows less the validation share."""
    rows = session.execute(
        select(EpochMetric.seconds, Dataset.n_samples, TrainingJob.training)
        .select_from(TrainingJob)
        .join(
            EpochMetric,
            (EpochMetric.job_id == TrainingJob.id) & (EpochMetric.epoch == TrainingJob.epoch),
        )
        .join(Dataset, Dataset.id == TrainingJob.dataset_id)
        .where(TrainingJob.status == JobStatus.RUNNING, EpochMetric.seconds > 0)
    ).all()
    epochs = sum(1 / seconds for seconds, _, _ in rows)
    samples = sum(
        n_samples * (1 - (training.get("validation_split") or 0)) / seconds
        for seconds, n_samples, training in rows
    )
    return TrainingSpeed(epochs, samples)


@dataclass(frozen=True)
class DeliveryFigures:
    """``deliveries``: webhook deliveries in each status; ``lag_seconds``: how long the oldest
    pending delivery has been due (0 when none is): a webhook worker that is missing, or
    receivers that keep failing."""

    deliveries: dict[DeliveryStatus, int]
    lag_seconds: float


def delivery_figures(session: Session, now: datetime) -> DeliveryFigures:
    counts = dict.fromkeys(DeliveryStatus, 0)
    rows = session.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    ).all()
    counts.update({status: count for status, count in rows})
    oldest = session.scalar(
        select(func.min(WebhookDelivery.next_attempt_at)).where(
            WebhookDelivery.status == DeliveryStatus.PENDING
        )
    )
    lag = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
    return DeliveryFigures(counts, lag)
