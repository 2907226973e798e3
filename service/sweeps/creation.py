"""Creating a sweep: the search expanded into trials and every trial checked as a job would be
(``resolve_job``), all before anything is stored; then the sweep (its base body once, each
trial's parameters) and its first ``max_parallel`` trials stored in one transaction, and those
trials published.
"""

import json
import secrets
from dataclasses import dataclass

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
from service.specs_json import trial_body
from service.sweeps.search import grid, random_trials
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


def check_trial(
    session: Session, settings: Settings, body: dict, number: int, base: dict, params: dict
) -> int:
    """Check trial ``number`` (``params`` set into ``base``) as a job would be; the bytes its
    job's JSON specs will take. A problem raises ``DataError`` at ``trials[number].<field>``,
    its parameters in the message. The resolved specs are not kept: the trial is resolved again
    when it becomes a job (``service.db.sweeps.trial_job``)."""
    trial = trial_body(base, params)
    try:
        resolved = resolve_job(
            session, settings, body["dataset_id"], trial["network"], trial["training"]
        )
        check_metric(resolved.dataset, resolved.training, body["metric"])
    except (DataError, SpecError) as error:
        shown = json.dumps(params, sort_keys=True)
        raise DataError(
            f"trials[{number}].{error.path}", f"{error.message} (trial {number}: {shown})"
        ) from None
    return json_bytes(resolved.network, None, resolved.training)


def run_order(params: list[dict], body: dict, seed: int) -> list[dict]:
    """The trials in the order they run. With early termination, a grid runs in an order
    shuffled with ``seed``: the first trials to reach a rung set its cutoffs, and a grid's first
    corner (every trial with the first learning rate, say) would set them all from one region
    of the space. Random search is in a random order already."""
    if body.get("early_termination") is None or body["search"]["method"] != "grid":
        return params
    order = np.random.default_rng(seed).permutation(len(params))
    return [params[index] for index in order]


@dataclass(frozen=True)
class CheckedTrials:
    """A sweep's base body ({network, training}, with the trials' shared seed), each trial's
    parameters in the order they run, and the bytes their jobs will store (their JSON specs),
    counted when the sweep is accepted: its trials become jobs later, past any quota check."""

    base: dict
    params: list[dict]
    jobs_bytes: int


def check_trials(session: Session, settings: Settings, body: dict) -> CheckedTrials:
    """Every trial checked, numbered from 1 in the order they run. The trials share one
    training seed (drawn now when the body has none), so that they differ only by their
    parameters."""
    for field in ("initial_weights", "init_from"):
        if body["network"].get(field) is not None:
            raise DataError(
                f"network.{field}", "a sweep's trials start from random weights: leave it out"
            )
    base = {"network": body["network"], "training": with_seed(body["training"])}
    expanded = expand(body["search"], settings.max_sweep_trials)
    ordered = run_order(expanded, body, base["training"]["seed"])
    jobs_bytes = sum(
        check_trial(session, settings, body, number, base, params)
        for number, params in enumerate(ordered, 1)
    )
    return CheckedTrials(base, ordered, jobs_bytes)


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
    check_sweep_admission(session, settings, min(body["max_parallel"], len(trials.params)))
    stored = json_bytes(body["search"], trials.base, trials.params)
    check_room_for(session, settings, stored + trials.jobs_bytes)
    sweep = Sweep(
        dataset_id=body["dataset_id"],
        search=body["search"],
        metric=body["metric"],
        goal=body["goal"],
        early_termination=body.get("early_termination"),
        max_parallel=body["max_parallel"],
        n_trials=len(trials.params),
        base=trials.base,
        trials=trials.params,
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
