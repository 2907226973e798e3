"""What issue 10's request hooks cost a prediction: keys, rate limits and the JSON log line.

    python -m bench.request_costs [--database embedded|postgres] [--seconds 6] [--rounds 2]

For each variant a fresh stack (``bench.serving.running_service``: Granian with 2 processes, a
worker, the dispatcher) trains the digits model (64-64-10) and wrk sends one row per request to
``/v1/models/{id}/predict`` at 1 and 16 connections after a warm-up. The variants take turns,
``--rounds`` times, and the best round of each is kept (the machine is shared and noisy); the
ratios to "bare" (no limits, no log line, no key) come from the same run.

* defaults: `make run` as it starts, AUTH=off with both rate limits (in each process's memory
  on the embedded broker, in Redis with --database postgres) and a JSON line per request;
* no rate limits; no log line (LOG_LEVEL=WARNING); bare (neither);
* AUTH=required: the defaults, and every request sends a key.

Needs wrk (``apt-get install -y wrk``).
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.serving import (
    CONNECTIONS,
    DATABASES,
    UNLIMITED,
    Request,
    WrkResult,
    machine,
    one_row_bodies,
    require_wrk,
    run_wrk,
    running_service,
    say,
    train_digits,
)
from service.settings import Settings

# Settings' own defaults (running_service turns limits off unless told).
DEFAULT_LIMITS = {
    "RATE_LIMIT": Settings.rate_limit,
    "PREDICT_RATE_LIMIT": Settings.predict_rate_limit,
}
QUIET = {"LOG_LEVEL": "WARNING"}
VARIANTS = {
    "defaults (AUTH=off, rate limits, log line)": DEFAULT_LIMITS,
    "no rate limits": UNLIMITED,
    "no log line": {**DEFAULT_LIMITS, **QUIET},
    "bare: neither": {**UNLIMITED, **QUIET},
    "AUTH=required, a key per request": {**DEFAULT_LIMITS, "AUTH": "required"},
}
BARE = "bare: neither"
BACKPROP = str(Path(sys.executable).parent / "backprop")


def api_key(settings_env: dict[str, str]) -> str:
    done = subprocess.run(
        [BACKPROP, "keys", "create", "--tenant", "bench", "--scope", "write"],
        env=settings_env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()[-1]


def measure_variant(
    database: str, changes: dict[str, str], args: argparse.Namespace
) -> dict[int, WrkResult]:
    with tempfile.TemporaryDirectory(prefix="bench-costs-") as name:
        folder = Path(name)
        with running_service(database, folder, changes) as (client, settings):
            header = ""
            if changes.get("AUTH") == "required":
                env = {**os.environ, "DATABASE_URL": settings.database_url}
                header = f"Authorization: Bearer {api_key(env)}"
                client.http.headers["Authorization"] = header.split(": ", 1)[1]
            model = train_digits(client)
            body = one_row_bodies(model.rows[0])["v1"]
            url = f"{client.base_url}/v1/models/{model.model_id}/predict"
            request = Request("ours", "/v1 predict", url, body, header=header)
            run_wrk(request, max(CONNECTIONS), 2, folder)
            return {c: run_wrk(request, c, args.seconds, folder) for c in CONNECTIONS}


def better(a: WrkResult | None, b: WrkResult) -> WrkResult:
    return b if a is None or b.requests_per_second > a.requests_per_second else a


def report(best: dict[str, dict[int, WrkResult]], database: str) -> str:
    lines = [
        f"{machine()}; database: {database}; /v1 predict, digits 64-64-10, one row per request",
        "",
        "| variant | conns | req/s | p50 ms | p99 ms | errors | req/s vs bare |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, results in best.items():
        for connections, result in results.items():
            ratio = result.requests_per_second / best[BARE][connections].requests_per_second
            lines.append(
                f"| {name} | {connections} | {result.requests_per_second:,.0f} | "
                f"{result.p50_ms:.2f} | {result.p99_ms:.2f} | {result.errors} | {ratio:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.request_costs", description=__doc__)
    parser.add_argument("--database", choices=sorted(DATABASES), default="embedded")
    parser.add_argument("--seconds", type=int, default=6, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="the variants take turns")
    args = parser.parse_args(argv)
    require_wrk()
    best: dict[str, dict[int, WrkResult]] = {name: {} for name in VARIANTS}
    for round_number in range(1, args.rounds + 1):
        for name, changes in VARIANTS.items():
            say(f"round {round_number}: {name}")
            for connections, result in measure_variant(args.database, changes, args).items():
                best[name][connections] = better(best[name].get(connections), result)
    print(report(best, args.database))


if __name__ == "__main__":
    main()
