"""The HTTP API, and the only package that imports Flask: the app factory (``app``), the server
that runs it (``server``: Granian), keys and tenants (``auth``), rate limits, the metrics
endpoint, the error envelope, the event streams, the dashboard and its pages (``web/``), and the
resources and schemas of every route. It validates, stores, enqueues and predicts; it never trains.
"""
