"""Storage: plain SQLAlchemy 2, no Flask, so the API and the worker share it."""
