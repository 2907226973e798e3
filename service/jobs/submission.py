"""Submitting a training job.

A submission is stored before anything is published (an outbox): the job is committed as queued
with ``dispatched_at`` NULL, then sent to the broker once; when the broker refuses, the job stays
queued and the dispatcher (service/dispatcher.py) sends it when the broker is back. The broker
never fails a submission.
"""

import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.broker import JobQueue
from service.db import dispatch, job_requests, records
from service.db.models import TrainingJob
from service.db.quotas import json_bytes
from service.jobs.idempotency import IdempotencyKey, Submission, replay
from service.jobs.specs import ResolvedJob, resolve_job
from service.logs import REQUEST_ID
from service.quotas import check_job_admission, check_room_for
from service.settings import Settings


def with_seed(training: dict) -> dict:
    """The training spec with a fixed seed, drawn now when none is given, so a job can be rerun
    (or resumed) to the same weights."""
    if training.get("seed") is not None:
        return training
    return {**training, "seed": secrets.randbelow(2**31)}


def new_job(resolved: ResolvedJob) -> TrainingJob:
    training = with_seed(resolved.training)
    return TrainingJob(
        dataset_id=resolved.dataset.id,
        network=resolved.network,
        initial_weights=resolved.initial_weights,
        training=training,
        stored_bytes=json_bytes(resolved.network, resolved.initial_weights, training),
        warnings=resolved.warnings,
        epochs=resolved.training["epochs"],
        model_name=resolved.model_name,
        # The submitting request's id (X-Request-ID): the worker's log lines for the job carry it.
        request_id=REQUEST_ID.get(),
    )


def store_job(session: Session, job: TrainingJob, key: IdempotencyKey | None) -> None:
    """Insert and commit ``job``, taking ``key`` over from an expired job in the same
    transaction; raises ``IntegrityError`` when a live job holds the key."""
    if key is not None:
        job.idempotency_key, job.request_hash = key.key, key.request_hash
        job_requests.release_expired_key(session, key.key, key.created_after)
    records.add(session, job)


def store_or_replay(session: Session, job: TrainingJob, key: IdempotencyKey | None) -> Submission:
    """Store ``job``; when a concurrent request with the same key won the unique index, that
    request's job."""
    try:
        store_job(session, job, key)
    except IntegrityError:
        session.rollback()
        winner = key and job_requests.find_job_by_key(session, key.key, key.created_after)
        if winner is None:
            raise
        return replay(winner, key)
    return Submission(job)


def submit_job(
    session: Session,
    queue: JobQueue,
    settings: Settings,
    key: IdempotencyKey | None,
    body: dict,
) -> Submission:
    """Store a queued job with its resolved specs, commit, and only then try to publish it; or
    the earlier job of the same idempotency key (which no quota refuses). Raises ``DataError``,
    ``SpecError`` or ``QuotaExceeded``."""
    earlier = key and job_requests.find_job_by_key(session, key.key, key.created_after)
    if earlier:
        return replay(earlier, key)
    check_job_admission(session, settings)
    job = new_job(resolve_job(session, settings, **body))
    check_room_for(session, settings, job.stored_bytes)
    submission = store_or_replay(session, job, key)
    if not submission.replayed:
        dispatch.publish(session, queue, submission.job.id)
    return submission
