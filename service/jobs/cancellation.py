"""Cancelling a job: a queued one at once, a running one at its next epoch boundary."""

from sqlalchemy.orm import Session

from service.db import job_requests
from service.db.models import TrainingJob
from service.vocabulary import JobStatus

# A cancel that loses a race (a worker claimed the queued job meanwhile) reads the job again.
CANCEL_TRIES = 3


class NotCancellable(Exception):
    """The job is not queued or running (any more)."""


CANCELLERS = {
    JobStatus.QUEUED: job_requests.cancel_queued_job,
    JobStatus.RUNNING: job_requests.request_cancel,
}


def cancel_job(session: Session, job: TrainingJob) -> TrainingJob:
    """Cancel a queued job at once, or ask a running one to stop at its next epoch boundary.

    Returns the job as it is afterwards; raises ``NotCancellable`` for a finished job.
    """
    for _ in range(CANCEL_TRIES):
        cancel = CANCELLERS.get(job.status)
        if cancel is None:
            raise NotCancellable(
                f"Job {job.id} is finished ({job.status}); only queued or running jobs can be"
                " cancelled."
            )
        cancelled = cancel(session, job.id)
        session.refresh(job)
        if cancelled:
            return job
    raise NotCancellable(f"Job {job.id} kept changing state while cancelling it; try again.")
