"""Hyperparameter sweeps as the API handles them: expanding a search into trials (``search``),
checking and storing a sweep (``creation``), and what a sweep shows (``views``).

No Flask here; the trials' progress is the workers' (service/db/sweeps.py).
"""
