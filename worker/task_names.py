"""Celery task names: stable strings shared by the API (which sends) and the worker (which runs)."""

TRAIN_MODEL = "backprop.train_model"
