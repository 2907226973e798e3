"""Where a single-row ``/v1`` predict spends its time inside the app, with every feature on:
``AUTH=required``, the prediction log, a canary split on the alias, both rate limits (in
Redis, with Redis as the broker), the JSON log line per request (issue 29).

    python -m bench.predict_profile [--requests 20000] [--top 25] [--in-memory] [--no-profile]

The app is built in this process on a throwaway SQLite database and Redis db 15; the digits
model (64-64-10) is trained twice by the worker's own function and ``digits@production`` split
90/10 between the versions. The requests go straight to ``app.wsgi_app`` (one environ built
once, a fresh body stream each): no server, no client, so the figures are the app's alone. It
prints the mean time per request, then cProfile's functions sorted by own time and by
cumulative time. (gunicorn's share is measured by bench/servers.py and py-spy, not here.)
"""

import argparse
import cProfile
import io
import json
import logging
import pstats
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


def request_loop(app, headers: dict[str, str], n: int) -> None:
    row = load_sample("digits").X[0].astype(float).tolist()
    body = json.dumps({"instances": [row]}).encode()
    environ = EnvironBuilder(
        path="/v1/models/digits@production/predict",
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-profile", action="store_true", help="the mean time only")
    parser.add_argument(
        "--in-memory", action="store_true", help="the embedded broker: no Redis, limits in memory"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as name:
        app, headers = prepared_app(Path(name), args.in_memory)
        logging.getLogger().handlers[0].setStream(open("/dev/null", "w"))  # noqa: SIM115
        request_loop(app, headers, 500)  # warm-up
        start = time.perf_counter()
        request_loop(app, headers, args.requests)
        mean = (time.perf_counter() - start) / args.requests
        print(f"{mean * 1e6:.0f} us per request, unprofiled, mean of {args.requests}")
        profile = cProfile.Profile()
        if not args.no_profile:
            profile.runcall(request_loop, app, headers, args.requests)
        app.extensions["prediction_log"].clear()
    if args.no_profile:
        return
    stats = pstats.Stats(profile, stream=sys.stdout).strip_dirs()
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
