"""Plain functions that build what tests need: schemas, rows and request bodies."""

import copy
import json
import socket
import subprocess
import sys
import textwrap
import time
from html.parser import HTMLParser
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from service.datasets.ingest import dataset_from_sample
from service.db import blob_writes, keys, records
from service.db.models import Base, EpochMetric, TrainingJob
from service.db.session import make_session_factory
from service.vocabulary import Scope

XOR_NETWORK = {
    "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "softmax"}],
}

# The digits spec of the accuracy checks: 98.2-98.4% on 450 held-out rows with seeds 1 and 42
# (tests/integration/test_end_to_end.py asks for 97%, tests/compose/stack.py for 95%).
DIGITS_NETWORK = {
    "layers": [{"units": 128, "activation": "relu"}, {"units": 10, "activation": "softmax"}],
    "init": "he",
}
DIGITS_TRAINING = {
    "epochs": 30,
    "batch_size": 32,
    "seed": 42,
    "optimizer": {"name": "adam", "learning_rate": 0.003},
}


def xor_training(epochs: int = 300) -> dict:
    return {
        "epochs": epochs,
        "batch_size": "full",
        "seed": 1,
        "optimizer": {"name": "adam", "learning_rate": 0.05},
    }


def job_body(dataset_id: int, epochs: int = 300, network: dict | None = None) -> dict:
    """A fresh body each call: a test may change it without touching the shared network."""
    return {
        "dataset_id": dataset_id,
        "network": copy.deepcopy(network or XOR_NETWORK),
        "training": xor_training(epochs),
    }


def sweep_body(dataset_id: int, epochs: int = 20, **changes) -> dict:
    """A grid sweep of 4 XOR trials (2 learning rates x 2 widths), 2 at a time; ``changes``
    replace its top-level fields."""
    return {
        **job_body(dataset_id, epochs),
        "search": {
            "method": "grid",
            "parameters": {
                "training.optimizer.learning_rate": [0.1, 0.5],
                "network.layers[0].units": [4, 8],
            },
        },
        "metric": "train_loss",
        "max_parallel": 2,
        **changes,
    }


def sqlite_sessions(path) -> sessionmaker[Session]:
    """Sessions on a new SQLite file with every table created."""
    sessions = make_session_factory(f"sqlite:///{path}")
    Base.metadata.create_all(sessions.kw["bind"])
    return sessions


def queued_xor_job(
    sessions: sessionmaker[Session], epochs: int = 300, network: dict | None = None
) -> int:
    """Store the XOR sample and a queued job on it, as the API would; return the job id."""
    with sessions() as session:
        with dataset_from_sample("xor", None) as packed:
            dataset = records.add_dataset(session, packed.row, packed.npz)
        job = TrainingJob(
            dataset_id=dataset.id,
            network=network or XOR_NETWORK,
            training=xor_training(epochs),
            epochs=epochs,
        )
        session.add(job)
        session.commit()
        return job.id


def add_epochs(sessions: sessionmaker[Session], job_id: int, epochs: range) -> None:
    """Store epoch records for ``epochs`` of a job, as its worker would."""
    with sessions() as session:
        for epoch in epochs:
            session.add(
                EpochMetric(
                    job_id=job_id,
                    epoch=epoch,
                    train_loss=1 / epoch,
                    learning_rate=0.1 / epoch,
                    seconds=0.01,
                )
            )
        session.get(TrainingJob, job_id).epoch = epochs[-1]
        session.commit()


def api_key(sessions: sessionmaker[Session], tenant: str, scope: str = "write") -> str:
    """A new key of ``tenant``, as ``backprop keys create`` makes it; returns the key's text."""
    with sessions() as session:
        return keys.create_key(session, tenant, Scope(scope))[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_envelope(response, status: int, field: str | None = None) -> dict:
    """The response is ``status`` with the error envelope (naming ``field``); return its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    if field is not None:
        assert field in error["details"], error
    return error


def proc_status_kib(key: str) -> int:
    """A figure of this process's /proc/self/status, in KiB: ``"VmRSS:"``, ``"VmHWM:"``."""
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(key))


def forget_peak_rss() -> int:
    """Forget this process's peak RSS so far (VmHWM becomes VmRSS); the RSS now, in KiB."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return proc_status_kib("VmRSS:")


def peak_rss_growth_mb(before_kib: int) -> float:
    """How far the peak RSS rose above ``before_kib`` (``forget_peak_rss``'s answer), in MiB."""
    return (proc_status_kib("VmHWM:") - before_kib) / 1024


PEAK_RSS = textwrap.dedent(
    """
    import json
    from tests.factories import forget_peak_rss, peak_rss_growth_mb
    {setup}
    before = forget_peak_rss()  # the setup's peak forgotten
    try:
        {call}
        outcome = "accepted"
    except DataError as error:
        outcome = error.field
    print(json.dumps({{"outcome": outcome, "growth_mb": peak_rss_growth_mb(before)}}))
    """
)
REPOSITORY = Path(__file__).resolve().parents[1]


def peak_rss_growth(setup: str, call: str) -> dict:
    """Run ``setup``, then ``call`` in a fresh interpreter: the field ``call``'s DataError
    names (or "accepted"), and how far the call raised the peak RSS above the RSS before it."""
    code = PEAK_RSS.format(setup=setup, call=call)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=REPOSITORY,
    )
    return json.loads(done.stdout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, ignoring: tuple[type[Exception], ...] = ()):
    """``predicate()``'s first truthy value, polled for up to ``timeout`` seconds; the
    exceptions in ``ignoring`` (a server not up yet) count as a falsy answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except ignoring:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class References(HTMLParser):
    """The ``src`` and ``href`` of every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


def page_references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.found


def fail_blob_writes_after_one_piece(monkeypatch) -> None:
    """Make the arrays' piecewise write raise on its second piece (a disk gone mid-write)."""
    pieces = blob_writes.file_pieces

    def failing_after_one_piece(file):
        for count, piece in enumerate(pieces(file)):
            if count == 1:
                raise OSError("the disk went away")
            yield piece

    monkeypatch.setattr(blob_writes, "file_pieces", failing_after_one_piece)
