"""Backprop Service: storage, broker and HTTP API around the model_core engine.

This file imports nothing, so that ``import service.db`` or ``import service.broker`` (the worker,
the dispatcher, the migrations) never loads Flask. The layers are drawn in README.md (Layout).
"""
