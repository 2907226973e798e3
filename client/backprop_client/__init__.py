"""A Python client for the Backprop Service HTTP API: ``from backprop_client import Client``."""

from backprop_client.client import Client
from backprop_client.errors import ApiError
from backprop_client.events import Event
from backprop_client.types import (
    Alias,
    Dataset,
    Epoch,
    Explanation,
    Job,
    LeaderboardEntry,
    Model,
    Operation,
    Prediction,
    Sweep,
    Weights,
)

__all__ = [
    "Alias",
    "ApiError",
    "Client",
    "Dataset",
    "Epoch",
    "Event",
    "Explanation",
    "Job",
    "LeaderboardEntry",
    "Model",
    "Operation",
    "Prediction",
    "Sweep",
    "Weights",
]
