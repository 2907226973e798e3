"""Tables: datasets, training_jobs, epoch_metrics, job_checkpoints, models, the registry's
model_names and model_aliases, api_keys, sweeps, webhooks with their deliveries (the outbox of
events) and each delivery's attempts, and the prediction log.

Data sets, jobs, models, names, aliases and sweeps belong to a tenant (``TenantOwned``); epoch
records and checkpoints belong to their job.

Arrays are stored as ``.npz`` blobs (``service.db.npz``: no pickle, read in place);
a trained model is the bytes of model_core's ``Model.to_bytes()``. Integer ids are never reused
(``sqlite_autoincrement``), so a cache keyed by id cannot serve a deleted model's successor.
"""

import enum
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from service.vocabulary import (
    DEFAULT_TENANT,
    MAX_NAME_LENGTH,
    MAX_TENANT_LENGTH,
    DeliveryStatus,
    JobStatus,
    OperationKind,
    OperationStatus,
    Scope,
    SweepStatus,
    Task,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# Ids and epoch numbers are 32-bit integers (SQLite's INTEGER is wider, PostgreSQL's is not):
# none is above model_core.MAX_INT32.
KEEP_IDS = {"sqlite_autoincrement": True}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database (SQLite stores none: it is put back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, _dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class FloatRow(TypeDecorator):
    """One row of numbers, stored as the bytes of its little-endian float64 values (a row of 64
    features: 512 bytes, written without a float's text form, which costs the prediction log
    more than anything else), read back as a float64 array."""

    impl = LargeBinary
    cache_ok = True
    dtype = np.dtype("<f8")

    def process_bind_param(self, value, _dialect) -> bytes | None:
        return None if value is None else np.asarray(value, dtype=self.dtype).tobytes()

    def process_result_value(self, value: bytes | None, _dialect) -> np.ndarray | None:
        return None if value is None else np.frombuffer(value, dtype=self.dtype)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime, dict: JSON, list: JSON}


def _enum_column(enum_type: type[enum.StrEnum], name: str) -> Enum:
    """A VARCHAR column with a CHECK constraint, storing the enum's values, not its names."""
    return Enum(
        enum_type,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda members: [member.value for member in members],
    )


class TenantOwned:
    """A row that belongs to one tenant: requests see and change only their own tenant's rows
    (service/db/tenancy.py)."""

    tenant: Mapped[str] = mapped_column(
        String(MAX_TENANT_LENGTH), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT, index=True
    )


class Dataset(TenantOwned, Base):
    """Features ``X`` (n_samples, n_features) and targets ``y`` (n_samples,) or (n, n_targets),
    and, when ``weighted``, each row's weight in the loss ``w`` (n_samples,).

    The arrays, as ``.npz`` bytes, are a row of their own (``DatasetBlob``). ``stored_bytes``
    is their size, counted against the tenant's storage quota.
    """

    __tablename__ = "datasets"
    __table_args__ = KEEP_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    task: Mapped[Task] = mapped_column(_enum_column(Task, "task"))
    source: Mapped[str] = mapped_column(String(20))
    n_samples: Mapped[int]
    n_features: Mapped[int]
    n_outputs: Mapped[int]
    feature_names: Mapped[list | None]
    target_names: Mapped[list | None]
    classes: Mapped[list | None]
    target_stats: Mapped[dict | None]
    weighted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetBlob(Base):
    """A data set's arrays as ``.npz`` bytes (service/db/npz.py), deleted with the data set.

    A table of its own, ``arrays`` its last column: SQLite builds a row's record in memory, the
    bound blob and a copy of it, unless the blob is a ``zeroblob`` in the record's last column,
    which it leaves unmaterialised for blob I/O to fill in pieces (service/db/blob_writes.py;
    docs/benchmarks.md, issue 29).
    """

    __tablename__ = "dataset_arrays"

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    arrays: Mapped[bytes] = mapped_column(LargeBinary)


class TrainingJob(TenantOwned, Base):
    """One request to train; ``attempt`` counts the times a worker has claimed it.

    A running attempt holds a lease (``lease_owner`` until ``lease_expires_at``) that its worker
    renews with heartbeats; an expired lease means the worker is gone and the job may be queued
    again. ``dispatched_at`` is the outbox mark: when the job was last sent to the broker (None:
    not yet, or to be sent again). ``cancel_requested`` asks a running attempt to stop.
    """

    __tablename__ = "training_jobs"
    # An Idempotency-Key names one job per tenant: two tenants may happen to send the same one.
    __table_args__ = (
        Index("ix_training_jobs_tenant_idempotency_key", "tenant", "idempotency_key", unique=True),
        # A sweep's trial becomes one job: a backstop to ``sweeps.advance``'s lock.
        UniqueConstraint("sweep_id", "trial"),
        KEEP_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[JobStatus] = mapped_column(
        _enum_column(JobStatus, "job_status"), default=JobStatus.QUEUED, index=True
    )
    attempt: Mapped[int] = mapped_column(default=0)
    network: Mapped[dict]
    # Given initial weights are kept apart from ``network``: showing a job stays cheap.
    initial_weights: Mapped[list | None] = mapped_column(deferred=True)
    training: Mapped[dict]
    warnings: Mapped[list] = mapped_column(default=list)
    epoch: Mapped[int] = mapped_column(default=0)
    epochs: Mapped[int]
    train_loss: Mapped[float | None]
    val_loss: Mapped[float | None]
    train_accuracy: Mapped[float | None]
    val_accuracy: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(index=True)
    dispatched_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    checkpoint_epoch: Mapped[int | None]
    # The registered name whose next version the job's model becomes, if any.
    model_name: Mapped[str | None] = mapped_column(String(MAX_NAME_LENGTH))
    # The X-Request-ID of the request that submitted the job: the worker's log lines carry it.
    request_id: Mapped[str | None] = mapped_column(String(64))
    # A sweep's trial: its sweep, number (from 1) and parameters ({path: value}), and the rung
    # decisions of early termination ({epoch, value, cutoff, reached}: the cutoff it was held to).
    sweep_id: Mapped[int | None] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), index=True
    )
    trial: Mapped[int | None]
    params: Mapped[dict | None]
    rungs: Mapped[list | None]
    # The bytes of its JSON specs (network, initial weights, training), counted against the
    # tenant's storage quota as blobs are.
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    dataset: Mapped[Dataset | None] = relationship()
    # Loaded with the jobs in one extra query per list (``model_id`` is in every job view).
    model: Mapped["TrainedModel | None"] = relationship(
        back_populates="job", passive_deletes=True, lazy="selectin"
    )

    @property
    def model_id(self) -> int | None:
        return self.model.id if self.model else None


class EpochMetric(Base):
    """One epoch of one job: losses, accuracies (None for regression), the learning rate it
    trained at (None in records stored before migration 0012) and seconds taken."""

    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("job_id", "epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    epoch: Mapped[int]
    train_loss: Mapped[float] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    train_accuracy: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    learning_rate: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)


class JobCheckpoint(Base):
    """The latest training state of a job (model_core's ``Trainer.checkpoint()`` bytes), replaced
    in the same transaction as the epoch records it covers: one row per job."""

    __tablename__ = "job_checkpoints"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("training_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int]
    epoch: Mapped[int]
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    # The size of ``blob``, counted against its job's tenant's storage quota.
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    saved_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainedModel(TenantOwned, Base):
    """A trained network: model_core's ``Model.to_bytes()`` plus what the API shows about it.

    A model of a job that named one is version ``version`` of ``name`` (both None otherwise);
    ``stored_bytes`` is the size of ``blob``; ``signature`` is its contract with callers
    (service/signatures.py), kept here so that it outlives the data set. A fine-tuned model names
    the model it started from, ``parent_model_id``: no foreign key, since a parent may be deleted
    and its children keep naming it (ids are never reused).
    """

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("tenant", "name", "version"),
        ForeignKeyConstraint(["tenant", "name"], ["model_names.tenant", "model_names.name"]),
        KEEP_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("training_jobs.id", ondelete="CASCADE"), unique=True
    )
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    task: Mapped[Task] = mapped_column(_enum_column(Task, "model_task"))
    n_features: Mapped[int]
    network: Mapped[dict]
    training: Mapped[dict]
    classes: Mapped[list | None]
    metrics: Mapped[dict]
    signature: Mapped[dict]
    blob: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    name: Mapped[str | None] = mapped_column(String(MAX_NAME_LENGTH))
    version: Mapped[int | None]
    parent_model_id: Mapped[int | None] = mapped_column(index=True)
    # The training rows' profile that drift is measured against (service/serving/drift.py), as
    # .npz; None for models trained before it was kept.
    reference: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # The dispatcher's latest live figures of the last day: {"computed_at", "rows", "psi":
    # {feature: value}, "accuracy"}, exported by /metrics (never computed at scrape time).
    live_figures: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))

    job: Mapped[TrainingJob] = relationship(back_populates="model")
    aliases: Mapped[list["ModelAlias"]] = relationship(
        primaryjoin="and_(TrainedModel.tenant == foreign(ModelAlias.tenant),"
        " TrainedModel.name == foreign(ModelAlias.name),"
        " TrainedModel.version == foreign(ModelAlias.version))",
        viewonly=True,
        lazy="selectin",
        order_by="ModelAlias.alias",
    )


class PredictionRecord(TenantOwned, Base):
    """One row of one logged prediction: ``prediction_id`` (a request's) and ``row`` (its index
    in the request) address it. The model it came from (``alias`` and ``split_arm`` when the
    request named an alias), its ``inputs`` (None when PREDICTION_LOG_INPUTS=off), what it
    answered (``prediction``, and ``probabilities`` for a classifier), the request's latency in
    milliseconds, and the truth once fed back (``label``: a class label or a target value).

    No foreign key to the model: the API writes rows in batches after answering, and a model
    deleted meanwhile must not fail the batch; the dispatcher deletes a deleted model's rows.
    """

    __tablename__ = "prediction_logs"
    __table_args__ = (
        UniqueConstraint("prediction_id", "row"),
        Index("ix_prediction_logs_model_id_created_at", "model_id", "created_at"),
        KEEP_IDS,
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    prediction_id: Mapped[str] = mapped_column(String(32))
    row: Mapped[int]
    model_id: Mapped[int]
    model_name: Mapped[str | None] = mapped_column(String(MAX_NAME_LENGTH))
    model_version: Mapped[int | None]
    alias: Mapped[str | None] = mapped_column(String(MAX_NAME_LENGTH))
    split_arm: Mapped[str | None] = mapped_column(String(MAX_NAME_LENGTH))
    inputs: Mapped[np.ndarray | None] = mapped_column(FloatRow)
    prediction: Mapped[Any] = mapped_column(JSON)
    probabilities: Mapped[np.ndarray | None] = mapped_column(FloatRow)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    label: Mapped[Any | None] = mapped_column(JSON(none_as_null=True))
    labelled_at: Mapped[datetime | None]


class PredictionBinCount(TenantOwned, Base):
    """What the log keeps of the inputs with PREDICTION_LOG_INPUTS=off: per model, hour (UTC,
    its start), feature and bin of the model's reference profile (service/serving/drift.py),
    how many logged rows fell in that bin. Enough for PSI, never a row's values."""

    __tablename__ = "prediction_bin_counts"

    model_id: Mapped[int] = mapped_column(primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    feature: Mapped[int] = mapped_column(primary_key=True)
    bin: Mapped[int] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class ModelName(TenantOwned, Base):
    """A tenant's registered name and the last version number it gave out: versions count up
    from 1 and are never reused, even once deleted (an app that saw ``digits:3`` never meets
    another). Two tenants may register the same name."""

    __tablename__ = "model_names"

    tenant: Mapped[str] = mapped_column(
        String(MAX_TENANT_LENGTH), primary_key=True, default=DEFAULT_TENANT
    )
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), primary_key=True)
    last_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAlias(TenantOwned, Base):
    """``name@alias`` points at one version of ``name``; that version cannot be deleted while
    an alias points at it (the foreign key refuses, and the API answers 409 first).

    A canary ``split`` (``[{"version", "weight"}, ...]``, 2 to 4 versions) shares its requests
    by weight, ``version`` being the one of the largest weight; a ``shadow`` (``{"version",
    "sample"}``) also runs a sample of them, never answering. ``split_id`` is new each time the
    alias is set: the requests counted per version since then are kept under it. The API
    refuses to delete a version in a split or shadow (409), as it does an aliased one."""

    __tablename__ = "model_aliases"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant", "name", "version"],
            ["models.tenant", "models.name", "models.version"],
            ondelete="RESTRICT",
        ),
    )

    tenant: Mapped[str] = mapped_column(
        String(MAX_TENANT_LENGTH), primary_key=True, default=DEFAULT_TENANT
    )
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), primary_key=True)
    alias: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), primary_key=True)
    version: Mapped[int]
    split: Mapped[list | None]
    shadow: Mapped[dict | None]
    split_id: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiKey(TenantOwned, Base):
    """A tenant's API key: only the SHA-256 of its secret is kept (keys are long random tokens,
    so a fast hash loses nothing). A key works until ``expires_at`` or ``revoked_at``.

    ``budget_key_id``: for a key minted over /v1/keys, the key made by the CLI at the root of
    its minting chain, whose rate budget it spends (None: a key of the CLI, its own budget)."""

    __tablename__ = "api_keys"
    __table_args__ = KEEP_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(MAX_TENANT_LENGTH), index=True)
    scope: Mapped[Scope] = mapped_column(_enum_column(Scope, "key_scope"))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    budget_key_id: Mapped[int | None]


class Sweep(TenantOwned, Base):
    """A hyperparameter sweep: trials of one job body with parameters changed, run as jobs.

    ``base`` is the job body ({network, training}, its seed drawn) and ``trials`` each trial's
    parameters ({path: value}) in the order they run: every trial's body was checked when the
    sweep was accepted, and is made and resolved again when it becomes a job. Sweeps stored
    before migration 0010 have no ``base``: their ``trials`` hold every trial's resolved specs
    ({params, network, training, warnings}). ``next_trial`` trials have become jobs so far, at
    most ``max_parallel`` queued or running at once. ``early_termination`` is ASHA's settings
    ({method, min_epochs, reduction_factor}) or None. When every trial has ended, ``best_job_id``
    is the trial whose model is best on ``metric``; with a ``model_name``, that model becomes
    the name's next version.
    """

    __tablename__ = "sweeps"
    __table_args__ = KEEP_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[SweepStatus] = mapped_column(
        _enum_column(SweepStatus, "sweep_status"), default=SweepStatus.RUNNING, index=True
    )
    search: Mapped[dict]
    metric: Mapped[str] = mapped_column(String(20))
    goal: Mapped[str] = mapped_column(String(10))
    early_termination: Mapped[dict | None]
    max_parallel: Mapped[int]
    n_trials: Mapped[int]
    next_trial: Mapped[int] = mapped_column(default=0)
    base: Mapped[dict | None] = mapped_column(deferred=True)
    trials: Mapped[list] = mapped_column(deferred=True)
    model_name: Mapped[str | None] = mapped_column(String(MAX_NAME_LENGTH))
    best_job_id: Mapped[int | None]
    request_id: Mapped[str | None] = mapped_column(String(64))
    # The bytes of its JSON (the search, the base and the trials), counted against the storage
    # quota.
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Webhook(TenantOwned, Base):
    """A tenant's subscription: ``events`` (names of WEBHOOK_EVENTS) are POSTed to ``url``,
    signed with the Standard Webhooks secret sealed in ``secret_sealed`` (a Fernet token keyed
    from SECRET_KEY: service/webhooks/secrets.py)."""

    __tablename__ = "webhooks"
    __table_args__ = KEEP_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list]
    secret_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(TenantOwned, Base):
    """One event to send to one webhook: the outbox row, written in the transaction of the
    event itself.

    ``event_id`` (the ``webhook-id`` header) is the event's, shared by its deliveries to every
    webhook, and ``body`` the exact bytes signed and sent on every attempt. ``attempts`` counts
    the claims so far; the next is due at ``next_attempt_at``. ``dispatched_at`` is the outbox
    mark (when the dispatcher last published it; None: to publish), and ``claimed_until`` the
    lease of the webhook worker sending it now.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = KEEP_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum_column(DeliveryStatus, "delivery_status"),
        default=DeliveryStatus.PENDING,
        index=True,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    tries: Mapped[list["WebhookAttempt"]] = relationship(
        lazy="selectin", order_by="WebhookAttempt.number", passive_deletes=True
    )


class WebhookAttempt(Base):
    """One attempt at a delivery: who sent it, when, and the answer (``status_code``) or the
    reason there was none (``error``). An attempt without ``finished_at`` was lost with its
    webhook worker."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "number"), KEEP_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int]
    owner: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)


class Operation(TenantOwned, Base):
    """A request answered later (202 + ``Location: /v1/operations/{id}``): ``request`` is what a
    worker needs to run it (validated, with the references resolved when it was accepted),
    ``result`` or ``error`` (the error envelope's ``{"code", "message", "details"}``, with
    ``status``, the HTTP status it would have had) what it ended with.

    Dispatched like a webhook delivery: ``dispatched_at`` is the outbox mark, ``claimed_until``
    the lease of the worker running it (renewed while it runs), ``attempts`` the claims so far.
    """

    __tablename__ = "operations"
    __table_args__ = KEEP_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[OperationKind] = mapped_column(_enum_column(OperationKind, "operation_kind"))
    status: Mapped[OperationStatus] = mapped_column(
        _enum_column(OperationStatus, "operation_status"),
        default=OperationStatus.QUEUED,
        index=True,
    )
    request: Mapped[dict]
    result: Mapped[dict | None]
    error: Mapped[dict | None]
    attempts: Mapped[int] = mapped_column(default=0)
    dispatched_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
