"""The embedded broker: kombu's SQLAlchemy transport, polled 20 times a second while messages
come, backing off to 4 times a second while its queues stay empty.

kombu's virtual transports sleep ``polling_interval`` seconds after finding every queue empty
(1 s by default), and that sleep was the embedded default's latency per job: tiny jobs ran at
0.99 a second (issue 12). The interval cannot be given as a transport option here, since this
transport hands all its options to ``sqlalchemy.create_engine``, which refuses unknown ones.

An empty poll is a ``BEGIN IMMEDIATE`` transaction and an ORM query per queue on the broker's
SQLite file: about 5% of a core for a training worker polled 20 times a second, 9% for the
webhook worker (two queues), even with nothing to do (docs/benchmarks.md, issue 29). So the
sleep after an empty poll doubles, from ``POLLING_SECONDS`` up to ``IDLE_POLLING_SECONDS``,
and is back to the shortest as soon as a message comes: a queue kept busy is polled as often as
before, an idle one costs a fifth as much, and the first message after a quiet spell waits at
most ``IDLE_POLLING_SECONDS`` more.

kombu's channel opens one ORM session for its life and never closes it, and a queue declared or
counted leaves that session's transaction open: a connection out of the broker's pool (and, on
SQLite, a read snapshot that holds back the WAL checkpoint). A process that opens a connection
per call, as the dispatcher declaring the queue each round a job waits, ran the pool out (5 +
10 overflow) while the garbage collector had not yet freed the sessions, and published nothing
for a minute. So a channel closes its session when it closes.
"""

from queue import Empty
from time import monotonic, sleep

from celery.worker import state as worker_state
from kombu.transport import sqlalchemy

POLLING_SECONDS = 0.05
IDLE_POLLING_SECONDS = 0.25


def stop_requested() -> bool:
    """Whether this process is a Celery worker told to stop (SIGTERM's warm shutdown, SIGQUIT's
    cold one), as ``celery.worker.state.maybe_shutdown`` reads it (a warm stop's flag is 0). The
    worker's loop checks it only between two ``drain_events`` calls of 2 s each: an idle worker
    on this transport polled on for up to 2 s after the signal, and every stop of an embedded
    stack (`backprop run`'s Ctrl-C, each test stack) waited that long for nothing."""
    flags = (worker_state.should_stop, worker_state.should_terminate)
    return any(flag is not None and flag is not False for flag in flags)


class Channel(sqlalchemy.Channel):
    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        super().close()


class Transport(sqlalchemy.Transport):
    Channel = Channel
    polling_interval = POLLING_SECONDS

    def drain_events(self, connection, timeout=None):
        """kombu's ``drain_events`` (deliver one message, or raise ``socket.timeout`` once
        ``timeout`` seconds have passed), with the sleep after each empty poll backing off."""
        started = monotonic()
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                waited = monotonic() - started
                if stop_requested() or (timeout is not None and waited >= timeout):
                    raise TimeoutError() from None
                pause = self.polling_interval
                if timeout is not None:
                    pause = min(pause, timeout - waited)
                sleep(pause)
                self.polling_interval = min(2 * self.polling_interval, IDLE_POLLING_SECONDS)
            else:
                self.polling_interval = POLLING_SECONDS
                return
