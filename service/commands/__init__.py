"""``backprop ...``: the commands that start processes (``cli``: api, worker, dispatcher, run,
db, demo, flower; ``supervisor``: all of them at once) and manage keys (``key_commands``), and the
people's commands that drive a running service over HTTP (``people_cli``, a client of the API
that never imports ``service.api``). Each command imports what it runs only when it runs.
"""
