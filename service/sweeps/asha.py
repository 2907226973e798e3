"""Early termination: asynchronous successive halving (ASHA, Li et al. 2020).

A trial reaching a rung continues when its metric is among the best ``1 / reduction_factor`` of
the trials that have reached that rung so far; the figures come from storage (service/db/sweeps.py).
"""

from dataclasses import dataclass

from sqlalchemy.orm import Session

from service.db import sweeps
from service.db.models import Sweep, TrainingJob


@dataclass(frozen=True)
class Asha:
    """ASHA's settings for one trial: rungs at ``min_epochs * reduction_factor**k`` epochs,
    below the trial's last epoch (a trial that gets there has nothing left to save)."""

    sweep_id: int
    metric: str
    goal: str
    min_epochs: int
    reduction_factor: int

    def is_rung(self, epoch: int, epochs: int) -> bool:
        rung = self.min_epochs
        while rung < epoch:
            rung *= self.reduction_factor
        return rung == epoch < epochs


def asha_for(session: Session, job: TrainingJob) -> Asha | None:
    """The ASHA settings of the job's sweep, or None (not a trial, or no early termination)."""
    if job.sweep_id is None:
        return None
    sweep = session.get(Sweep, job.sweep_id)
    settings = sweep.early_termination if sweep else None
    if not settings:
        return None
    return Asha(
        sweep.id, sweep.metric, sweep.goal, settings["min_epochs"], settings["reduction_factor"]
    )


def asha_rule(value: float, reached: list[float], goal: str, reduction_factor: int):
    """(continue, cutoff): a trial continues while fewer than ``reduction_factor`` trials have
    reached the rung (``reached`` includes its own value; no cutoff yet), or when its value is
    within the best ``len(reached) // reduction_factor`` of them: no worse than the cutoff, the
    last of those."""
    if len(reached) < reduction_factor:
        return True, None
    kept = len(reached) // reduction_factor
    cutoff = sorted(reached, reverse=goal == "maximize")[kept - 1]
    return (value <= cutoff if goal == "minimize" else value >= cutoff), cutoff


def rung_decision(session: Session, asha: Asha, job_id: int, epoch: int) -> dict | None:
    """The decision for the trial at rung ``epoch``, from the stored epochs of its sweep:
    ``{epoch, value, cutoff, reached, pruned}``; None when its own value is not stored."""
    value = sweeps.epoch_value(session, job_id, asha.metric, epoch)
    if value is None:
        return None
    reached = sweeps.rung_values(session, asha.sweep_id, asha.metric, epoch)
    keep, cutoff = asha_rule(value, reached, asha.goal, asha.reduction_factor)
    return {
        "epoch": epoch,
        "value": value,
        "cutoff": cutoff,
        "reached": len(reached),
        "pruned": not keep,
    }
