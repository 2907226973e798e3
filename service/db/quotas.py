"""What a tenant holds, counted for its quotas (service/quotas.py).

Counted in the caller's session: a request's session sees only its tenant's rows
(service/db/tenancy.py), so these are the tenant's figures.
"""

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import Dataset, TrainedModel, TrainingJob
from service.vocabulary import ACTIVE_STATUSES


def active_jobs(session: Session) -> int:
    """How many jobs are queued or running."""
    active = TrainingJob.status.in_(ACTIVE_STATUSES)
    return session.scalar(select(func.count(TrainingJob.id)).where(active))


def stored_bytes(session: Session) -> int:
    """Bytes stored in data sets and models."""
    return sum(
        session.scalar(select(func.coalesce(func.sum(table.stored_bytes), 0)))
        for table in (Dataset, TrainedModel)
    )
