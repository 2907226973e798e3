"""One blueprint per resource."""

from service.api.resources.aliases import blp as aliases
from service.api.resources.datasets import blp as datasets
from service.api.resources.explanations import blp as explanations
from service.api.resources.health import blp as health
from service.api.resources.jobs import blp as jobs
from service.api.resources.keys import blp as keys
from service.api.resources.models import ModelPrediction, predict
from service.api.resources.models import blp as models
from service.api.resources.operations import blp as operations
from service.api.resources.predictions import blp as predictions
from service.api.resources.predictions import models_blp as model_predictions
from service.api.resources.sweeps import blp as sweeps
from service.api.resources.v2 import ModelInfer, model_infer
from service.api.resources.v2 import blp as v2
from service.api.resources.webhooks import blp as webhooks

BLUEPRINTS = (
    datasets,
    jobs,
    sweeps,
    models,
    aliases,
    explanations,
    model_predictions,
    predictions,
    keys,
    webhooks,
    operations,
    health,
    v2,
)

# The prediction routes, dispatched straight to their function (service/api/app.py,
# ``dispatch_directly``): each class's method documents the operation and calls the function.
DIRECT_VIEWS = {ModelPrediction: predict, ModelInfer: model_infer}
