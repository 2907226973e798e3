"""Where a single-row ``/v1`` predict (or ``/v2`` JSON infer) spends its time inside the app,
with every feature on: ``AUTH=required``, the prediction log, a canary split on the alias, both
rate limits (in Redis, with Redis as the broker), the JSON log line per request (issue 29).

    python -m bench.predict_profile [--requests 20000] [--top 25] [--in-memory] [--no-profile]
        [--path v1|v2] [--before PATH [--rounds 3]]

The app is built in this process on a throwaway SQLite database and Redis db 15; the digits
model (64-64-10) is trained twice by the worker's own function and ``digits@production`` split
90/10 between the versions. The requests go straight to ``app.wsgi_app`` (one environ built
once, a fresh body stream each): no server, no client, so the figures are the app's alone. It
prints the time per request (``timed``: wall, CPU, best chunk), then under cProfile the share
of each part of the request (``PARTS``) and the functions sorted by own time and by cumulative
time. (the server's share is measured by bench/servers.py and py-spy, not here.)

``--path v2`` sends the same row to ``/v2/models/digits@production/infer`` as the protocol's JSON
(one FP64 ``input`` tensor) instead of ``/v1/models/digits@production/predict``.

``--before PATH`` compares with a checkout of the code (``git archive main | tar -x -C
/tmp/before``): each of ``--rounds`` rounds measures the mean time unprofiled in a fresh process
of the before tree, then in one of this tree (this file run on each tree's packages), and the
per-round figures and their medians are printed with the load average.
"""

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from werkzeug.test import EnvironBuilder

from service.api.app import create_app
from service.datasets.samples import load_sample
from service.db import keys
from service.db.migrate import upgrade
from service.db.session import make_session_factory
from service.logs import configure_logging
from service.settings import Settings
from service.vocabulary import Scope
from worker.training import run_training

REDIS_URL = "redis://127.0.0.1:6379/15"
JOB = {
    "network": {
        "layers": [{"units": 64, "activation": "relu"}, {"units": 10, "activation": "softmax"}]
    },
    "training": {"epochs": 2, "batch_size": 32, "seed": 1},
    "model_name": "digits",
}


def prepared_app(folder: Path, in_memory: bool):
    """The app with every feature on, a key, and ``digits@production`` split over 2 versions;
    ``in_memory``: on the embedded broker (rate limits counted in memory, no Redis)."""
    broker_url = f"sqla+sqlite:///{folder / 'broker.sqlite'}" if in_memory else REDIS_URL
    if not in_memory:
        redis.Redis.from_url(REDIS_URL).flushdb()
    settings = Settings(
        database_url=f"sqlite:///{folder / 'backprop.sqlite'}",
        broker_url=broker_url,
        auth="required",
        log_level="INFO",
        prediction_log="on",
    )
    upgrade(settings)
    configure_logging(settings)
    app = create_app(settings)
    sessions = make_session_factory(settings.database_url)
    with sessions() as session:
        key = keys.create_key(session, "default", Scope.ADMIN)[1]
    client, headers = app.test_client(), {"Authorization": f"Bearer {key}"}
    dataset = client.post("/v1/datasets", json={"builtin": "digits"}, headers=headers).get_json()
    for _ in range(2):
        job = client.post("/v1/jobs", json={**JOB, "dataset_id": dataset["id"]}, headers=headers)
        run_training(sessions, job.get_json()["id"], settings)
    split = {"versions": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
    put = client.put("/v1/models/digits/aliases/production", json=split, headers=headers)
    assert put.status_code == 200, put.get_json()
    return app, headers


def request_of(path: str) -> tuple[str, bytes]:
    """The URL and JSON body of one single-row prediction on ``path`` (``v1`` or ``v2``)."""
    row = load_sample("digits").X[0].astype(float).tolist()
    if path == "v2":
        tensor = {"name": "input", "shape": [1, len(row)], "datatype": "FP64", "data": row}
        return "/v2/models/digits@production/infer", json.dumps({"inputs": [tensor]}).encode()
    return "/v1/models/digits@production/predict", json.dumps({"instances": [row]}).encode()


def request_loop(app, headers: dict[str, str], n: int, path: str = "v1") -> None:
    url, body = request_of(path)
    environ = EnvironBuilder(
        path=url,
        method="POST",
        data=body,
        content_type="application/json",
        headers=headers,
    ).get_environ()
    statuses = []

    def start_response(status, _headers, _exc_info=None):
        statuses.append(status)

    for _ in range(n):
        each = dict(environ, **{"wsgi.input": io.BytesIO(body)})
        b"".join(app.wsgi_app(each, start_response))
    if set(statuses) != {"200 OK"}:
        raise RuntimeError(f"answers: {set(statuses)}")


CHUNK = 200
# The parts of a request the profile's summary names: (label, file, function), each part's
# cumulative time as a share of ``wsgi_app``'s; indented labels are inside the part above them.
PARTS = (
    ("Flask: request context (environ, routing) and its pop", "ctx.py", "push"),
    ("", "ctx.py", "pop"),
    ("before_request hooks", "flask/app.py", "preprocess_request"),
    ("  request id and clock", "request_hooks.py", "start_request"),
    ("  key and scope", "auth.py", "identify_caller"),
    ("  rate limits", "limits.py", "check"),
    ("  JSON depth (reads the body)", "bodies.py", "refuse_deep_json"),
    ("the view (/v1)", "models.py", "predict"),
    ("the view (/v2)", "v2.py", "model_infer"),
    ("  body parsed and checked (/v1)", "models.py", "predict_body"),
    ("  rows of the body (/v1)", "models.py", "rows_to_predict"),
    ("  body parsed and checked (/v2)", "inference_protocol.py", "parse_infer_request"),
    ("  model reference, canary split", "registry.py", "serve"),
    ("  forward pass", "network.py", "predict_with_proba"),
    ("  prediction log", "prediction_logging.py", "log_prediction"),
    ("  answer encoded (/v1)", "models.py", "json_response"),
    ("  answer encoded (/v2)", "inference_protocol.py", "encode_infer_response"),
    ("after_request hooks", "flask/app.py", "process_response"),
    ("  the request's log line", "request_hooks.py", "log_request"),
    ("teardown", "flask/app.py", "do_teardown_request"),
    ("the response handed to WSGI", "wrappers/response.py", "__call__"),
)
FIGURES = ("wall", "cpu", "best")
TIMES_LINE = re.compile(r"^(\d+) us per request \(wall, mean\), (\d+) us CPU, (\d+) us best")


def timed(app, headers: dict[str, str], n: int, path: str) -> dict[str, float]:
    """Microseconds per request over ``n`` requests: ``wall`` (mean), ``cpu`` (the process's CPU
    time, its threads' included: on a loaded machine it leaves out the waits for a core), and
    ``best`` (the mean of the fastest chunk of ``CHUNK`` requests)."""
    chunks = []
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for _ in range(max(1, n // CHUNK)):
        start = time.perf_counter()
        request_loop(app, headers, CHUNK, path)
        chunks.append(time.perf_counter() - start)
    done = len(chunks) * CHUNK
    return {
        "wall": (time.perf_counter() - wall_start) / done * 1e6,
        "cpu": (time.process_time() - cpu_start) / done * 1e6,
        "best": min(chunks) / CHUNK * 1e6,
    }


def times_in_fresh_process(tree: Path, args: argparse.Namespace) -> dict[str, int]:
    """``timed``'s figures for ``tree``'s code, measured by this file in a fresh process whose
    packages are ``tree``'s."""
    # -P: this file's folder (bench/, whose profile.py would shadow the stdlib's) not on the path
    command = [sys.executable, "-P", str(Path(__file__).resolve()), "--no-profile"]
    command += ["--requests", str(args.requests), "--path", args.path]
    command += ["--in-memory"] if args.in_memory else []
    environment = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'client'}"}
    output = subprocess.run(
        command, env=environment, cwd=tree, capture_output=True, text=True, check=True
    ).stdout
    match = next(found for line in output.splitlines() if (found := TIMES_LINE.match(line)))
    return dict(zip(FIGURES, map(int, match.groups()), strict=True))


def compare_with(before: Path, args: argparse.Namespace) -> None:
    """Before and after in turn, ``args.rounds`` times; each round's figures and the medians."""
    trees = {"before": before.resolve(), "after": Path(__file__).resolve().parents[1]}
    rounds: dict[str, list[dict[str, int]]] = {name: [] for name in trees}
    for round_number in range(1, args.rounds + 1):
        for name, tree in trees.items():
            figures = times_in_fresh_process(tree, args)
            rounds[name].append(figures)
            shown = ", ".join(f"{figure} {us} us" for figure, us in figures.items())
            print(f"round {round_number} {name}: {shown} (load {os.getloadavg()[0]:.1f})")
    for figure in FIGURES:
        before_us, after_us = (statistics.median(r[figure] for r in rounds[name]) for name in trees)
        print(
            f"median {figure}: before {before_us:.0f} us, after {after_us:.0f} us,"
            f" after/before {after_us / before_us:.2f}"
        )


def print_parts(stats: pstats.Stats) -> None:
    """Each of ``PARTS``'s cumulative time under the profile, as a share of ``wsgi_app``'s (the
    pop of the request context is added to its push's line)."""
    total = cumulative_of(stats, "flask/app.py", "wsgi_app")
    shares: list[tuple[str, float]] = []
    for label, file, name in PARTS:
        seconds = cumulative_of(stats, file, name)
        if not seconds:
            continue
        if label:
            shares.append((label, seconds))
        else:
            shares[-1] = (shares[-1][0], shares[-1][1] + seconds)
    print(f"where wsgi_app's {total:.2f} s went (cumulative, under cProfile):")
    for label, seconds in shares:
        print(f"  {label:<58} {seconds:7.2f} s {seconds / total:6.1%}")


def cumulative_of(stats: pstats.Stats, file: str, name: str) -> float:
    """The cumulative seconds of ``file``'s function ``name``; of the largest when the file
    has several of that name (ctx.py's two ``push``: the request context's calls the app
    context's)."""
    matches = [
        entry[3]
        for (filename, _line, function), entry in stats.stats.items()
        if function == name and filename.endswith(file)
    ]
    return max(matches, default=0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-profile", action="store_true", help="the mean time only")
    parser.add_argument(
        "--in-memory", action="store_true", help="the embedded broker: no Redis, limits in memory"
    )
    parser.add_argument(
        "--path", choices=("v1", "v2"), default="v1", help="/v1 predict or /v2 JSON"
    )
    parser.add_argument("--before", type=Path, help="a checkout to compare with, unprofiled")
    parser.add_argument("--rounds", type=int, default=3, help="with --before")
    args = parser.parse_args(argv)
    if args.before is not None:
        compare_with(args.before, args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as name:
        app, headers = prepared_app(Path(name), args.in_memory)
        logging.getLogger().handlers[0].setStream(open("/dev/null", "w"))  # noqa: SIM115
        request_loop(app, headers, 500, args.path)  # warm-up
        figures = timed(app, headers, args.requests, args.path)
        print(
            f"{figures['wall']:.0f} us per request (wall, mean), {figures['cpu']:.0f} us CPU,"
            f" {figures['best']:.0f} us best {CHUNK} in a row; unprofiled, {args.requests} requests"
        )
        profile = cProfile.Profile()
        if not args.no_profile:
            profile.runcall(request_loop, app, headers, args.requests, args.path)
        app.extensions["prediction_log"].clear()
    if args.no_profile:
        return
    print_parts(pstats.Stats(profile))
    stats = pstats.Stats(profile, stream=sys.stdout).strip_dirs()
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
