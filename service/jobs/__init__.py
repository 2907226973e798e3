"""Training jobs as the API handles them: checking a submission (``specs``), idempotency keys
(``idempotency``), storing and publishing it (``submission``), and cancelling (``cancellation``).

No Flask here: the resources call these with a session, the settings and the queue.
"""
