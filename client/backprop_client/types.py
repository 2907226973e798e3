"""What the service answers, as the JSON it sends (``TypedDict``s: plain dicts at run time).

``total=False``: the service may add fields, and a model's detail view carries more than a
listing's row.
"""

from typing import Any, Literal, TypedDict

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "pruned"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "pruned"})


class Dataset(TypedDict, total=False):
    id: int
    name: str
    task: Literal["classification", "regression"]
    source: str
    rows: int
    features: int
    outputs: int
    feature_names: list[str] | None
    target_names: list[str] | None
    classes: list[Any] | None
    target_stats: dict[str, list[float]] | None
    weighted: bool  # the rows carry weights in the loss
    created_at: str
    task_inferred: bool  # in an upload's answer only: the targets chose the task


class Job(TypedDict, total=False):
    id: int
    dataset_id: int | None
    status: JobStatus
    attempt: int
    epoch: int
    epochs: int
    train_loss: float | None
    val_loss: float | None
    train_accuracy: float | None
    val_accuracy: float | None
    error: str | None
    cancel_requested: bool
    model_id: int | None
    model_name: str | None
    network: dict[str, Any]
    training: dict[str, Any]
    warnings: list[str]
    created_at: str
    started_at: str | None
    finished_at: str | None


class Epoch(TypedDict, total=False):
    epoch: int
    train_loss: float
    val_loss: float | None
    train_accuracy: float | None
    val_accuracy: float | None
    learning_rate: float | None
    seconds: float


class Model(TypedDict, total=False):
    id: int
    name: str | None
    version: int | None
    aliases: list[str]
    job_id: int
    dataset_id: int | None
    task: Literal["classification", "regression"]
    n_features: int
    classes: list[Any] | None
    network: dict[str, Any]
    training: dict[str, Any]
    metrics: dict[str, Any]
    parent_model_id: int | None  # the model it was fine-tuned from (network.init_from)
    lineage: list["Ancestor"]  # in a model's detail view: its parent, the parent's parent...
    created_at: str


class Ancestor(TypedDict, total=False):
    model_id: int
    name: str | None
    version: int | None
    deleted: bool


class Layer(TypedDict):
    W: list[list[float]]
    b: list[float]
    activation: str


class Weights(TypedDict, total=False):
    task: Literal["classification", "regression"]
    dtype: str
    layers: list[Layer]
    standardization: dict[str, list[float]] | None
    classes: list[Any] | None


class Prediction(TypedDict, total=False):
    model_id: int
    name: str | None
    version: int | None
    prediction_id: str
    predictions: list[Any]
    probabilities: list[list[float]]


class RowExplanation(TypedDict, total=False):
    target: Any
    f_x: float
    f_baseline: float  # integrated_gradients and shapley
    completeness_error: float  # integrated_gradients and shapley
    attributions: dict[str, float]  # by feature name, in input order


class Explanation(TypedDict, total=False):
    model_id: int
    name: str | None
    version: int | None
    method: str
    target: Any
    baseline: Any
    steps: int
    quadrature: str
    explanations: list[RowExplanation]


class Alias(TypedDict, total=False):
    name: str
    alias: str
    version: int


OperationStatus = Literal["queued", "running", "succeeded", "failed"]
OPERATION_ENDED: frozenset[str] = frozenset({"succeeded", "failed"})


class OperationError(TypedDict, total=False):
    status: int
    code: str
    message: str
    details: dict[str, list[str]]


class Operation(TypedDict, total=False):
    """A request answered later (docs/api.md, "Operations"): ``result`` is the body it would
    have answered, ``error`` the error envelope with its ``status``."""

    id: int
    kind: Literal["promotion", "importance"]
    status: OperationStatus
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    result: dict[str, Any] | None
    error: OperationError | None


SweepStatus = Literal["running", "succeeded", "failed", "cancelled"]
SWEEP_FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class LeaderboardEntry(TypedDict, total=False):
    trial: int
    job_id: int
    status: JobStatus
    params: dict[str, Any]
    metric: float | None
    epoch: int
    seconds: float
    model_id: int | None
    rungs: list[dict[str, Any]]


class Sweep(TypedDict, total=False):
    id: int
    status: SweepStatus
    dataset_id: int | None
    search: dict[str, Any]
    metric: str
    goal: Literal["minimize", "maximize"]
    early_termination: dict[str, Any] | None
    max_parallel: int
    n_trials: int
    model_name: str | None
    best_job_id: int | None
    model_id: int | None
    counts: dict[str, int]
    leaderboard: list[LeaderboardEntry]
    created_at: str
    finished_at: str | None
