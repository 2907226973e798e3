"""What ``GET /v1/sweeps/{id}`` shows: the sweep, its trials' counts by status, and the
leaderboard."""

from sqlalchemy.orm import Session

from service.db import sweeps
from service.db.models import Sweep

# The sweep's own columns shown; not ``trials``, every trial's specs (deferred: never loaded here).
SHOWN_COLUMNS = (
    "id",
    "status",
    "dataset_id",
    "search",
    "metric",
    "goal",
    "early_termination",
    "max_parallel",
    "n_trials",
    "model_name",
    "best_job_id",
    "created_at",
    "finished_at",
)


def leaderboard_entry(score: sweeps.Score) -> dict:
    job = score.job
    return {
        "trial": job.trial,
        "job_id": job.id,
        "status": job.status,
        "params": job.params,
        "metric": score.metric,
        "epoch": score.epoch,
        "seconds": score.seconds,
        "model_id": job.model_id,
        "rungs": job.rungs or [],
    }


def sweep_detail(session: Session, sweep: Sweep) -> dict:
    board = sweeps.leaderboard(session, sweep)
    best = next((score.job for score in board if score.job.id == sweep.best_job_id), None)
    return {
        **{column: getattr(sweep, column) for column in SHOWN_COLUMNS},
        "counts": sweeps.status_counts(session, sweep),
        "model_id": best.model_id if best else None,
        "leaderboard": [leaderboard_entry(score) for score in board],
    }
