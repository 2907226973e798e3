"""Sweeps: the body that creates one, and the sweep as shown (with its leaderboard)."""

import marshmallow as ma
from marshmallow import validate

from model_core import MAX_INT32
from service.api.schemas.jobs import JobCreateSchema
from service.api.schemas.models import model_name_field
from service.api.schemas.specs import MAX_SEED
from service.vocabulary import (
    GOALS,
    METRIC_GOALS,
    JobStatus,
    SweepStatus,
)

MAX_PARALLEL = 1000

PARAMETERS_DOC = {
    "description": "Paths into the job body (`training.optimizer.learning_rate`,"
    " `network.layers[0].units`) and their values: a list (grid: every combination; random: a"
    ' choice), or for random search a distribution: `{"loguniform": [low, high]}`,'
    ' `{"uniform": [low, high]}`, `{"int": [low, high]}` or `{"choice": [...]}`',
    "example": {
        "training.optimizer.learning_rate": [0.001, 0.01],
        "network.layers[0].units": [16, 64],
    },
}


class SearchSchema(ma.Schema):
    method = ma.fields.String(required=True, validate=validate.OneOf(["grid", "random"]))
    parameters = ma.fields.Dict(
        keys=ma.fields.String(validate=validate.Length(min=1, max=200)),
        required=True,
        validate=validate.Length(min=1, max=50),
        metadata=PARAMETERS_DOC,
    )
    trials = ma.fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_INT32),
        metadata={"description": "random search: how many trials to draw (MAX_SWEEP_TRIALS)"},
    )
    seed = ma.fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=0, max=MAX_SEED),
        metadata={"description": "random search: the same seed draws the same trials"},
    )


class EarlyTerminationSchema(ma.Schema):
    method = ma.fields.String(required=True, validate=validate.OneOf(["asha"]))
    min_epochs = ma.fields.Integer(
        strict=True,
        required=True,
        validate=validate.Range(min=1, max=MAX_INT32),
        metadata={"description": "the first rung; rungs at min_epochs * reduction_factor^k"},
    )
    reduction_factor = ma.fields.Integer(
        strict=True,
        load_default=3,
        validate=validate.Range(min=2, max=100),
        metadata={"description": "a trial continues past a rung in the best 1/reduction_factor"},
    )


class SweepCreateSchema(JobCreateSchema):
    """A job body, the parameters to vary over it, and how to rank and stop trials."""

    search = ma.fields.Nested(SearchSchema, required=True)
    metric = ma.fields.String(load_default="val_loss", validate=validate.OneOf(list(METRIC_GOALS)))
    goal = ma.fields.String(
        validate=validate.OneOf(GOALS),
        metadata={"description": "default: minimize for losses, maximize for accuracies"},
    )
    early_termination = ma.fields.Nested(EarlyTerminationSchema, allow_none=True)
    max_parallel = ma.fields.Integer(
        strict=True,
        load_default=4,
        validate=validate.Range(min=1, max=MAX_PARALLEL),
        metadata={"description": "trials queued or running at once"},
    )
    model_name = model_name_field("the best trial's model becomes the next version of this name")


class LeaderboardEntrySchema(ma.Schema):
    trial = ma.fields.Integer()
    job_id = ma.fields.Integer()
    status = ma.fields.Enum(JobStatus, by_value=True)
    params = ma.fields.Dict()
    metric = ma.fields.Float(
        allow_none=True, metadata={"description": "the sweep's metric at `epoch`"}
    )
    epoch = ma.fields.Integer(
        metadata={
            "description": "the epoch whose weights the trial's model holds (the best one when"
            " early stopping restored it, else the last one)"
        }
    )
    seconds = ma.fields.Float(metadata={"description": "seconds of training"})
    model_id = ma.fields.Integer(allow_none=True)
    rungs = ma.fields.List(
        ma.fields.Dict(),
        metadata={
            "description": "early termination's decisions: epoch, value, cutoff (null while"
            " fewer than reduction_factor trials had reached it), reached, pruned"
        },
    )


class SweepSchema(ma.Schema):
    id = ma.fields.Integer()
    status = ma.fields.Enum(SweepStatus, by_value=True)
    dataset_id = ma.fields.Integer(allow_none=True)
    search = ma.fields.Dict()
    metric = ma.fields.String()
    goal = ma.fields.String()
    early_termination = ma.fields.Dict(allow_none=True)
    max_parallel = ma.fields.Integer()
    n_trials = ma.fields.Integer()
    model_name = ma.fields.String(allow_none=True)
    best_job_id = ma.fields.Integer(allow_none=True)
    created_at = ma.fields.DateTime()
    finished_at = ma.fields.DateTime(allow_none=True)


class SweepDetailSchema(SweepSchema):
    counts = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        metadata={"description": "trials by job status, and `waiting`: not yet a job"},
    )
    model_id = ma.fields.Integer(
        allow_none=True, metadata={"description": "the best trial's model, once the sweep ended"}
    )
    leaderboard = ma.fields.List(ma.fields.Nested(LeaderboardEntrySchema))
