"""JSON Schemas of model_core's network and training specs, for the OpenAPI document.

model_core checks the specs (``resolve_spec``) and names the field of each error; these schemas
say the same thing to clients, built from the same registries. What JSON Schema cannot say is
left to the description: softmax only on the last layer, dropout only on hidden layers, the
output layer's units against the data set's classes or target columns, nesterov needing
momentum, a schedule replacing the optimizer's decay, the initial weights' shapes.
"""

from model_core import MAX_INT32
from model_core.activations import ACTIVATIONS
from model_core.initializers import INITIALIZERS
from model_core.losses import LOSSES
from model_core.optimizers import OPTIMIZERS
from model_core.schedules import SCHEDULES
from model_core.specs import DTYPES, EARLY_STOPPING_DEFAULTS, TRAINING_DEFAULTS
from service.vocabulary import SERVICE_TRAINING_FIELDS

MAX_SEED = 2**32 - 1


def count(minimum: int, maximum: int | None = MAX_INT32) -> dict:
    schema = {"type": "integer", "minimum": minimum}
    return schema if maximum is None else {**schema, "maximum": maximum}


def number(
    minimum: float, maximum: float | None = None, *, above: bool = False, upto: bool = False
) -> dict:
    """A number >= ``minimum`` (> when ``above``), and < ``maximum`` (<= when ``upto``) when
    given."""
    schema = {"type": "number", "minimum": minimum}
    if above:
        schema["exclusiveMinimum"] = True
    if maximum is not None:
        schema["maximum"] = maximum
        if not upto:
            schema["exclusiveMaximum"] = True
    return schema


def closed_object(properties: dict, required: list[str] | None = None, **extra) -> dict:
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return {**schema, **extra}


def choice(options, **extra) -> dict:
    return {"type": "string", "enum": sorted(options), **extra}


BOOLEAN = {"type": "boolean"}
FRACTION = number(0.0, 1.0)
POSITIVE = number(0.0, above=True)
NUMBERS = {"type": "array", "items": {"type": "number"}}

# The check of each optimizer setting, as model_core.specs.resolve_optimizer makes it.
OPTIMIZER_SETTINGS = {
    "learning_rate": POSITIVE,
    "momentum": FRACTION,
    "nesterov": {**BOOLEAN, "description": "needs momentum > 0"},
    "decay": number(0.0),
    "beta1": FRACTION,
    "beta2": FRACTION,
    "epsilon": POSITIVE,
}


def optimizer_schema(name: str) -> dict:
    """The object form of optimizer ``name``; ``name`` may be left out for the default, sgd."""
    defaults = OPTIMIZERS[name].DEFAULTS
    settings = {key: {**OPTIMIZER_SETTINGS[key], "default": defaults[key]} for key in defaults}
    default_name = TRAINING_DEFAULTS["optimizer"]["name"]
    return closed_object(
        {"name": choice([name]), **settings},
        required=None if name == default_name else ["name"],
        title=name,
    )


LAYER = closed_object(
    {
        "units": count(1),
        "activation": choice(ACTIVATIONS, description="softmax only on the last layer"),
        "dropout": {
            **FRACTION,
            "default": 0.0,
            "description": "hidden layers only: the fraction of units dropped in each training"
            " batch (inverted dropout; none at inference)",
        },
    },
    required=["units", "activation"],
)

NETWORK_SPEC = closed_object(
    {
        "layers": {
            "type": "array",
            "minItems": 1,
            "items": LAYER,
            "description": "the last layer's units: the data set's classes (or 1 sigmoid unit"
            " for 2 classes) or its target columns",
        },
        "loss": choice(
            LOSSES,
            nullable=True,
            description="null or absent: cross_entropy after softmax, binary_cross_entropy"
            " after a sigmoid for classes, else mse",
        ),
        "init": choice(INITIALIZERS, description="default: he after relu layers, else xavier"),
        "dtype": choice(DTYPES, default="float32"),
        "initial_weights": {
            "type": "array",
            "nullable": True,
            "items": closed_object(
                {
                    "W": {"type": "array", "items": NUMBERS, "description": "(inputs, units)"},
                    "b": {**NUMBERS, "description": "(units,)"},
                },
                required=["W", "b"],
            ),
            "description": "one {W, b} per layer, in its shape",
        },
        "init_from": {
            "anyOf": [{"type": "string"}, count(1)],
            "description": "fine-tune: a model reference of your registry (42, digits, digits:3,"
            " digits@production), resolved to its id when the job is submitted; training starts"
            " from its weights and standardisation (the optimizer starts fresh). What the spec"
            " leaves out (layers, loss, init, dtype, training.standardize) is the model's; the"
            " layers must be its",
        },
        "replace_output": {
            **BOOLEAN,
            "description": "with init_from: keep the model's hidden layers, start a new output"
            " layer sized for this data set (other classes or targets)",
        },
    },
    anyOf=[{"required": ["layers"]}, {"required": ["init_from"]}],
    description="model_core's network spec (docs/model_core.md); layers are required unless"
    " init_from gives them",
)

EARLY_STOPPING = closed_object(
    {
        "patience": count(1),
        "min_delta": number(0.0),
        "restore_best": BOOLEAN,
    },
    description=f"true: the defaults {EARLY_STOPPING_DEFAULTS}",
)

# The check of each schedule setting, as model_core.specs.resolve_schedule makes it.
SCHEDULE_SETTINGS = {
    "step_size": count(1),
    "gamma": number(0.0, 1.0, above=True, upto=True),
    "t_max": count(1),
    "eta_min": number(0.0),
    "factor": number(0.0, 1.0, above=True),
    "patience": count(0),
    "threshold": FRACTION,
    "min_lr": number(0.0),
}


def schedule_schema(name: str) -> dict:
    """Schedule ``name``'s object: its required settings and those with defaults."""
    kind = SCHEDULES[name]
    settings = {key: SCHEDULE_SETTINGS[key] for key in kind.REQUIRED}
    settings.update(
        {key: {**SCHEDULE_SETTINGS[key], "default": value} for key, value in kind.DEFAULTS.items()}
    )
    return closed_object(
        {"name": choice([name]), **settings}, required=["name", *kind.REQUIRED], title=name
    )


# The service's own training fields (SERVICE_TRAINING_FIELDS), checked by service.jobs.specs.
SERVICE_TRAINING = {
    "max_seconds": {**POSITIVE, "description": "a time limit, at most MAX_JOB_SECONDS"},
    "checkpoint_every_epochs": count(1, None),
    "checkpoint_every_seconds": POSITIVE,
}

TRAINING_SPEC = closed_object(
    {
        "epochs": {**count(0), "description": "0 only with network.init_from"},
        "batch_size": {
            "anyOf": [count(1), choice(["full"])],
            "description": "rows per step, or full for the whole training set",
        },
        "shuffle": BOOLEAN,
        "seed": {**count(0, MAX_SEED), "nullable": True},
        "optimizer": {
            "anyOf": [choice(OPTIMIZERS), *(optimizer_schema(name) for name in OPTIMIZERS)],
            "description": "a name, or an object with its name and settings",
        },
        "l2": number(0.0),
        "validation_split": FRACTION,
        "early_stopping": {
            "anyOf": [BOOLEAN, EARLY_STOPPING],
            "nullable": True,
            "description": "null or false: off",
        },
        "standardize": BOOLEAN,
        "class_weight": {
            "anyOf": [
                choice(["balanced"]),
                {"type": "object", "additionalProperties": number(0.0)},
            ],
            "nullable": True,
            "description": "classification: balanced (n_samples / (n_classes * count)), or"
            " {label: weight} (labels as text; a label left out weighs 1); multiplies the data"
            " set's row weights",
        },
        "schedule": {
            "anyOf": [schedule_schema(name) for name in SCHEDULES],
            "nullable": True,
            "description": "the learning rate per epoch, as torch.optim.lr_scheduler's; not"
            " with optimizer.decay",
        },
        "warmup_epochs": {
            **count(0),
            "default": 0,
            "description": "epoch e <= N runs at learning_rate x e / N; then the schedule",
        },
        "clip_norm": {
            **POSITIVE,
            "nullable": True,
            "description": "clip each batch's gradient to this L2 norm (clip_grad_norm_)",
        },
        **SERVICE_TRAINING,
    },
    description="model_core's training spec (docs/model_core.md), plus the service's"
    f" {', '.join(SERVICE_TRAINING_FIELDS)}",
)
