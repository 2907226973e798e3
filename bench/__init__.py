"""Benchmarks of model_core against scikit-learn, PyTorch and a textbook NumPy loop.

``python -m bench.engine`` (``make bench``) runs them; docs/benchmarks.md records the figures.
"""
