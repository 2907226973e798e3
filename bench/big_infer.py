"""The 10,000-row binary ``/v2`` infer on the 784-256-128-10 model, before and after a change,
against model_core's forward pass in this process (issue 29's target: >= 60% of it).

    python -m bench.big_infer --before PATH [--repeats 7] [--rows 10000]

``--before`` is a checkout of the code to compare with (``git archive e218183 | tar -x -C
/tmp/before``). The model is trained once, through the stack of this tree (bench/serving.py's
``train_synthetic``: the synthetic rows of bench/workloads.py, 2 epochs); then a second stack of
the ``--before`` tree is started on the same SQLite database, and the two answer the same
requests. Each stack is ``make run``'s (Granian with 2 processes, a worker, the dispatcher),
rate limits and keys off as issue 9's figures were. The three calls take turns round by round
(bench/serving.py's ``best_seconds``): model_core's ``predict_with_proba`` here, the binary
infer to the before stack, the same to the after stack (the answer read, not decoded; each
stack's first answer checked against model_core's probabilities). Best of ``--repeats``.
"""

import argparse
import tempfile
from pathlib import Path

from bench.contracts import REPO, stack_of
from bench.service import Client
from bench.serving import (
    BIG_ROWS,
    best_seconds,
    binary_infer_body,
    checked_infer,
    say,
    train_synthetic,
)
from model_core import Model
from service.db import records
from service.db.session import make_session_factory
from service.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout to compare with")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rows", type=int, default=BIG_ROWS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-big-infer-") as name:
        folder = Path(name)
        (folder / "after").mkdir()
        (folder / "before").mkdir()
        shared = {
            "DATABASE_URL": f"sqlite:///{folder / 'backprop.sqlite'}",
            "BROKER_URL": f"sqla+sqlite:///{folder / 'broker.sqlite'}",
        }
        with stack_of(REPO, folder / "after", shared) as after_url:
            say("training 784-256-128-10")
            model = train_synthetic(
                Client(after_url), Settings(database_url=shared["DATABASE_URL"]), args.rows
            )
            with make_session_factory(shared["DATABASE_URL"])() as session:
                engine = Model.from_bytes(records.get_model_blob(session, model.model_id))
            with stack_of(args.before.resolve(), folder / "before", shared) as before_url:
                x = model.rows[: args.rows]
                expected = engine.predict_proba(x)
                calls = [lambda: engine.predict_with_proba(x)]
                for base_url in (before_url, after_url):
                    url = f"{base_url}/v2/models/{model.v2_name}/infer"
                    call, why = checked_infer(
                        Client(base_url).http, url, x, binary_infer_body, expected
                    )
                    if call is None:
                        raise RuntimeError(why)
                    calls.append(call)
                seconds = best_seconds(calls, args.repeats)
    print(report(seconds, args.rows, args.repeats))


def report(seconds: list[float], rows: int, repeats: int) -> str:
    in_process = seconds[0]
    lines = [
        f"| {rows:,} rows, 784-256-128-10 | seconds (best of {repeats}) | rows/s | of in-process |",
        "| --- | ---: | ---: | ---: |",
    ]
    labels = (
        "model_core predict_with_proba, in process",
        "/v2 binary, before",
        "/v2 binary, after",
    )
    for label, value in zip(labels, seconds, strict=True):
        lines.append(f"| {label} | {value:.3f} | {rows / value:,.0f} | {in_process / value:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
