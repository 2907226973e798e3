"""What a tenant holds, counted for its quotas (service/quotas.py).

Counted in the caller's session: a request's session sees only its tenant's rows
(service/db/tenancy.py), so these are the tenant's figures. Every row that holds a tenant's bytes
keeps their count in ``stored_bytes``: the blobs of data sets, models and checkpoints, and the
JSON of jobs and sweeps.
"""

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import Dataset, JobCheckpoint, Sweep, TrainedModel, TrainingJob
from service.vocabulary import ACTIVE_STATUSES

# The tables whose rows belong to a tenant and count their own bytes.
TENANT_TABLES = (Dataset, TrainedModel, TrainingJob, Sweep)


def json_bytes(*values: Any) -> int:
    """The bytes ``values`` take in JSON columns, written as SQLAlchemy writes them."""
    return sum(len(json.dumps(value)) for value in values)


def active_jobs(session: Session) -> int:
    """How many jobs are queued or running."""
    active = TrainingJob.status.in_(ACTIVE_STATUSES)
    return session.scalar(select(func.count(TrainingJob.id)).where(active))


def stored_bytes(session: Session) -> int:
    """Bytes stored in data sets, models, jobs, sweeps and the checkpoints of the jobs."""
    held = sum(
        session.scalar(select(func.coalesce(func.sum(table.stored_bytes), 0)))
        for table in TENANT_TABLES
    )
    # Checkpoints have no tenant of their own: they are their jobs' (the tenant's criteria
    # apply to the jobs' subquery).
    tenants_jobs = select(TrainingJob.id).scalar_subquery()
    checkpoints = select(func.coalesce(func.sum(JobCheckpoint.stored_bytes), 0)).where(
        JobCheckpoint.job_id.in_(tenants_jobs)
    )
    return int(held + session.scalar(checkpoints))
