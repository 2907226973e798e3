"""The words every layer shares: tasks, statuses, scopes, name and tenant patterns, the figures of
an epoch and which way each is better, and ``DataError``.

Storage, the domain packages, the API and the worker all speak these; this module imports nothing
of ours, so that taking a word never loads a table, Flask or Celery (MLflow's ``entities``).
"""

import enum


class Task(enum.StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # A sweep's trial ended by early termination (ASHA): history kept, no model.
    PRUNED = "pruned"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class SweepStatus(enum.StrEnum):
    """A sweep runs until every trial has ended; it then succeeded when one trial has a model."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DeliveryStatus(enum.StrEnum):
    """A webhook delivery: waiting for its next attempt, or done either way."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class OperationStatus(enum.StrEnum):
    """An asynchronous operation (a promotion gate or an importance on a large data set):
    waiting for a worker, being run, or ended with a result or an error."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class OperationKind(enum.StrEnum):
    """What an operation runs: the promotion gate of an alias, or a model's feature importance."""

    PROMOTION = "promotion"
    IMPORTANCE = "importance"


# What a webhook may subscribe to (its deliveries' ``type``).
WEBHOOK_EVENTS = ("model.version.created", "alias.moved", "job.finished", "sweep.finished")


class Scope(enum.StrEnum):
    """What an API key may do, each including the one before: read, then write within its
    tenant, then also manage the tenant's keys."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


# Registered model names and aliases: lowercase, starting with a letter (never taken for an id).
MAX_NAME_LENGTH = 64
NAME_PATTERN = rf"[a-z][a-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}"

# The tenant of everything made while AUTH=off, and of rows from before tenants existed.
DEFAULT_TENANT = "default"
MAX_TENANT_LENGTH = 64
TENANT_PATTERN = rf"[a-z0-9][a-z0-9._-]{{0,{MAX_TENANT_LENGTH - 1}}}"

# Fields of a job's training spec that belong to the service, not to model_core (which refuses
# keys it does not know): the API checks them (service/jobs/specs.py), the worker applies them.
SERVICE_TRAINING_FIELDS = ("max_seconds", "checkpoint_every_epochs", "checkpoint_every_seconds")
# Fields of a job's network spec that belong to the service: the registered model it starts from
# (stored as the model id it named at submission) and whether its output layer is replaced.
SERVICE_NETWORK_FIELDS = ("init_from", "replace_output")

# The figures of an epoch record, mirrored on its job as the latest ones.
EPOCH_FIGURES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")

# The figures a sweep can rank trials by, and which way is better by default.
METRIC_GOALS = {
    "train_loss": "minimize",
    "val_loss": "minimize",
    "train_accuracy": "maximize",
    "val_accuracy": "maximize",
}
assert set(METRIC_GOALS) == set(EPOCH_FIGURES)
GOALS = ("minimize", "maximize")


class DataError(ValueError):
    """Data the service cannot train on or serve; ``field`` is the request field to fix, and
    ``summary`` the answer's one-line message when it is not ``field: message``."""

    def __init__(self, field: str, message: str, summary: str | None = None):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.summary = summary or str(self)

    @property
    def path(self) -> str:
        """Where the error is, as ``SpecError.path`` says it: the request field."""
        return self.field
