"""Creating a sweep: the search expanded into trials and every trial checked as a job would be
(``resolve_job``), all before anything is stored; then the sweep and its first ``max_parallel``
trials stored in one transaction, and those trials published.
"""

import json
import secrets

import numpy as np
from sqlalchemy.orm import Session

from model_core import SpecError
from service.broker import JobQueue
from service.db import dispatch, sweeps
from service.db.models import Dataset, Sweep
from service.db.quotas import json_bytes
from service.jobs.specs import find_dataset, resolve_job
from service.jobs.submission import with_seed
from service.logs import REQUEST_ID
from service.quotas import check_room_for, check_sweep_admission
from service.settings import Settings
from service.sweeps.search import grid, random_trials, trial_body
from service.vocabulary import METRIC_GOALS, DataError, Task


def expand(search: dict, max_trials: int) -> list[dict]:
    """The trials' parameters; raises ``DataError`` naming the field of ``search`` at fault."""
    if search["method"] == "grid":
        if search.get("trials") is not None:
            raise DataError("search.trials", "is for random search: a grid runs every combination")
        return grid(search["parameters"], max_trials)
    trials = search.get("trials")
    if trials is None:
        raise DataError("search.trials", "random search needs the number of trials to draw")
    if trials > max_trials:
        raise DataError(
            "search.trials", f"is {trials}; the limit is {max_trials} (MAX_SWEEP_TRIALS)"
        )
    return random_trials(search["parameters"], trials, search["seed"])


def check_metric(dataset: Dataset, training: dict, metric: str) -> None:
    """The metric must be one every trial records: validation figures need a validation split,
    accuracies classes."""
    if metric.startswith("val_") and not training.get("validation_split"):
        raise DataError("training.validation_split", f"must be above 0 to rank trials by {metric}")
    if metric.endswith("accuracy") and dataset.task is not Task.CLASSIFICATION:
        raise DataError("metric", f"{metric} needs a classification data set")


def check_trial(session: Session, settings: Settings, body: dict, number: int, trial: dict) -> dict:
    """Trial ``number``'s resolved specs; a problem raises ``DataError`` at
    ``trials[number].<field>``, its parameters in the message."""
    try:
        resolved = resolve_job(
            session, settings, body["dataset_id"], trial["network"], trial["training"]
        )
        check_metric(resolved.dataset, resolved.training, body["metric"])
    except (DataError, SpecError) as error:
        params = json.dumps(trial["params"], sort_keys=True)
        raise DataError(
            f"trials[{number}].{error.path}", f"{error.message} (trial {number}: {params})"
        ) from None
    return {
        "params": trial["params"],
        "network": resolved.network,
        "training": resolved.training,
        "warnings": resolved.warnings,
    }


def run_order(params: list[dict], body: dict, seed: int) -> list[dict]:
    """The trials in the order they run. With early termination, a grid runs in an order
    shuffled with ``seed``: the first trials to reach a rung set its cutoffs, and a grid's first
    corner (every trial with the first learning rate, say) would set them all from one region
    of the space. Random search is in a random order already."""
    if body.get("early_termination") is None or body["search"]["method"] != "grid":
        return params
    order = np.random.default_rng(seed).permutation(len(params))
    return [params[index] for index in order]


def check_trials(session: Session, settings: Settings, body: dict) -> list[dict]:
    """Every trial's checked specs, numbered from 1 in the order they run. The trials share
    one training seed (drawn now when the body has none), so that they differ only by their
    parameters."""
    if body["network"].get("initial_weights") is not None:
        raise DataError(
            "network.initial_weights", "a sweep's trials start from random weights: leave it out"
        )
    base = {"network": body["network"], "training": with_seed(body["training"])}
    expanded = expand(body["search"], settings.max_sweep_trials)
    trials = []
    for number, params in enumerate(run_order(expanded, body, base["training"]["seed"]), 1):
        trial = {**trial_body(base, params), "params": params}
        trials.append(check_trial(session, settings, body, number, trial))
    return trials


def trial_jobs_bytes(trials: list[dict]) -> int:
    """The bytes the trials' jobs will store (their JSON specs), counted when the sweep is
    accepted: its trials become jobs later, past any quota check."""
    return sum(json_bytes(trial["network"], None, trial["training"]) for trial in trials)


def with_defaults(body: dict) -> dict:
    """The body with the goal its metric implies and a random search's seed, when not given."""
    search = body["search"]
    if search["method"] == "random" and search.get("seed") is None:
        search = {**search, "seed": secrets.randbelow(2**31)}
    goal = body.get("goal") or METRIC_GOALS[body["metric"]]
    return {**body, "search": search, "goal": goal}


def create_sweep(session: Session, queue: JobQueue, settings: Settings, body: dict) -> Sweep:
    """Check, store and start a sweep; raises ``DataError``, ``SpecError`` or
    ``QuotaExceeded`` before anything is stored."""
    body = with_defaults(body)
    find_dataset(session, body["dataset_id"])
    trials = check_trials(session, settings, body)
    check_sweep_admission(session, settings, min(body["max_parallel"], len(trials)))
    stored = json_bytes(body["search"], trials)
    check_room_for(session, settings, stored + trial_jobs_bytes(trials))
    sweep = Sweep(
        dataset_id=body["dataset_id"],
        search=body["search"],
        metric=body["metric"],
        goal=body["goal"],
        early_termination=body.get("early_termination"),
        max_parallel=body["max_parallel"],
        n_trials=len(trials),
        trials=trials,
        model_name=body.get("model_name"),
        request_id=REQUEST_ID.get(),
        stored_bytes=stored,
    )
    session.add(sweep)
    session.flush()
    started = sweeps.advance(session, sweep.id)
    session.commit()
    for job_id in started.job_ids:
        dispatch.publish(session, queue, job_id)
    return sweep
