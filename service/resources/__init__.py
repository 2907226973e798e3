"""One blueprint per resource."""

from service.resources.datasets import blp as datasets
from service.resources.health import blp as health
from service.resources.jobs import blp as jobs
from service.resources.keys import blp as keys
from service.resources.models import blp as models
from service.resources.sweeps import blp as sweeps
from service.resources.v2 import blp as v2

BLUEPRINTS = (datasets, jobs, sweeps, models, keys, health, v2)
