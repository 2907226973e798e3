"""Per-tenant quotas: queued + running jobs (``QUOTA_JOBS``) and bytes stored
(``QUOTA_STORED_BYTES``: data sets, models, checkpoints, and the JSON of jobs and sweeps, as
service/db/quotas.py counts them); 0 turns a quota off.

Checked in the transaction that would add to them, before anything is written: a refused
request leaves nothing behind. An upload is also refused before its file is parsed when the
tenant's storage is already full. Two requests of one tenant at the same moment may both pass, so
a tenant can go over by what its requests in flight add, and by the models of the jobs it
already has (a job accepted is trained and stored whatever the quota says by then).
"""

from sqlalchemy.orm import Session

from service.db import quotas
from service.settings import Settings

# A job's 429 asks for a retry this much later: by then a job may well have ended.
JOBS_RETRY_AFTER_SECONDS = 30


class QuotaExceeded(Exception):
    """A request the tenant's quota ``quota`` (``quota.jobs``...) refuses, answered ``status``."""

    def __init__(self, quota: str, message: str, status: int, retry_after: int | None = None):
        super().__init__(message)
        self.quota = quota
        self.message = message
        self.status = status
        self.retry_after = retry_after


def check_room_for(session: Session, settings: Settings, n_bytes: int) -> None:
    """Refuse (422) storing ``n_bytes`` more when that takes the tenant over its storage."""
    quota = settings.quota_stored_bytes
    if not quota:
        return
    held = quotas.stored_bytes(session)
    if held + n_bytes > quota:
        raise QuotaExceeded(
            "quota.stored_bytes",
            f"Storing {n_bytes} more bytes would take this tenant's {held} bytes over its quota"
            f" of {quota} (QUOTA_STORED_BYTES): delete data sets or models first.",
            422,
        )


def check_upload_admission(session: Session, settings: Settings) -> None:
    """Refuse (422) a data set when the tenant's storage is already full, before its file is
    parsed (seconds of CPU for a large one); ``check_room_for`` then checks its exact size."""
    check_storage_not_full(session, settings.quota_stored_bytes, "no data set can be added")


def check_job_admission(session: Session, settings: Settings) -> None:
    """Refuse a new job when the tenant has ``QUOTA_JOBS`` queued or running (429: retry when
    one ends), or when its storage is full (422: the job's model could not be stored)."""
    check_active_jobs(session, settings.quota_jobs)
    check_storage_not_full(
        session, settings.quota_stored_bytes, "the job's model could not be stored"
    )


def check_active_jobs(session: Session, quota: int) -> None:
    if not quota:
        return
    active = quotas.active_jobs(session)
    if active >= quota:
        raise QuotaExceeded(
            "quota.jobs",
            f"This tenant has {active} jobs queued or running, at its quota of {quota}"
            " (QUOTA_JOBS): submit again when one has ended.",
            429,
            JOBS_RETRY_AFTER_SECONDS,
        )


def check_sweep_admission(session: Session, settings: Settings, first_trials: int) -> None:
    """Refuse a sweep whose first ``first_trials`` jobs would take the tenant over
    ``QUOTA_JOBS`` (429), or when its storage is full (422). Only the trials queued or running
    count: a sweep holds at most ``max_parallel`` of them, and the rest wait outside the quota.
    First trials over the quota on their own are a 422 naming ``max_parallel``: no wait helps."""
    quota = settings.quota_jobs
    if quota and first_trials > quota:
        raise QuotaExceeded(
            "max_parallel",
            f"The sweep would queue {first_trials} trials at once, over this tenant's quota of"
            f" {quota} jobs queued or running (QUOTA_JOBS): make max_parallel {quota} or less.",
            422,
        )
    active = quotas.active_jobs(session) if quota else 0
    if quota and active + first_trials > quota:
        raise QuotaExceeded(
            "quota.jobs",
            f"This tenant has {active} jobs queued or running and the sweep would queue"
            f" {first_trials} more, over its quota of {quota} (QUOTA_JOBS): lower max_parallel,"
            " or submit again when jobs have ended.",
            429,
            JOBS_RETRY_AFTER_SECONDS,
        )
    check_storage_not_full(
        session, settings.quota_stored_bytes, "the sweep's best model could not be stored"
    )


def check_storage_not_full(session: Session, quota: int, refused: str) -> None:
    """Refuse (422) when the tenant stores ``quota`` bytes or more; ``refused`` says what that
    prevents."""
    if not quota:
        return
    held = quotas.stored_bytes(session)
    if held >= quota:
        raise QuotaExceeded(
            "quota.stored_bytes",
            f"This tenant stores {held} bytes, at its quota of {quota} (QUOTA_STORED_BYTES), so"
            f" {refused}: delete data sets or models first.",
            422,
        )
