"""The embedded broker: kombu's SQLAlchemy transport, polled 20 times a second instead of once.

kombu's virtual transports sleep ``polling_interval`` seconds after finding every queue empty
(1 s by default), and that sleep was the embedded default's latency per job: tiny jobs ran at
0.99 a second (issue 12). The interval cannot be given as a transport option here, since this
transport hands all its options to ``sqlalchemy.create_engine``, which refuses unknown ones.
An empty poll is one indexed SELECT on the broker's SQLite file.
"""

from kombu.transport import sqlalchemy

POLLING_SECONDS = 0.05


class Transport(sqlalchemy.Transport):
    polling_interval = POLLING_SECONDS
