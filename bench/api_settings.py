"""What a setting costs the server: ``backprop api`` started in turn with each variant of its
settings, on the database and Redis of one of bench.features' stacks, under wrk.

    python -m bench.api_settings --backend postgres --rounds 3 \\
        --variant INFO LOG_LEVEL=INFO --variant WARNING LOG_LEVEL=WARNING

The stacks (bench/features.py's ``stacks``: every feature off, or every feature on with its key
and canary; the digits model trained and ``bench-digits@production`` set) stay up; each round
starts one ``backprop api`` per variant, in turn, with the settings of the stack ``--features``
names and the variant's on top, warms it at 16 connections for 2 s, then loads it with that
stack's request (one digits row, with its key when every feature is on) at 1 and 16 connections
for ``--seconds`` each. A variant may set ``PYTHONPATH`` to another checkout, to compare code.
The report gives each figure's median over the rounds, the server's CPU per request among them
(bench/server_cpu.py): the figure a shared machine moves least.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench.contracts import REPO
from bench.features import FEATURES, Stack, stacks
from bench.servers import measure, report, running
from bench.serving import Request, WrkResult, free_port, say

BACKPROP = Path(sys.executable).parent / "backprop"


def variant(text: list[str]) -> tuple[str, dict[str, str]]:
    """``NAME VAR=VALUE...`` as given to --variant."""
    name, *assignments = text
    settings = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{assignment!r} is not VAR=VALUE")
        settings[key] = value
    return name, settings


def api_environment(stack: Stack, features: str) -> dict[str, str]:
    """The environment of one more ``backprop api`` on ``stack``'s database and broker, with
    the settings of its ``features`` (every feature on or off); ``PORT`` is the caller's."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": stack.settings.database_url,
        "BROKER_URL": stack.settings.broker_url,
        "HOST": "127.0.0.1",
        **FEATURES[features],
    }


def request_to(stack: Stack, base_url: str, name: str) -> Request:
    """``stack``'s prediction (its row, its key) sent to another API, at ``base_url``."""
    path = stack.request.url.split("/v1/", 1)[1]
    return Request(
        name, "instances", f"{base_url}/v1/{path}", stack.request.body, header=stack.request.header
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("embedded", "postgres"), default="postgres")
    parser.add_argument("--features", choices=tuple(FEATURES), default="off")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument(
        "--variant", nargs="+", action="append", required=True, metavar="NAME VAR=VALUE"
    )
    args = parser.parse_args(argv)
    try:
        variants = dict(variant(text) for text in args.variant)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    with tempfile.TemporaryDirectory(prefix="bench-api-settings-") as name:
        folder = Path(name)
        with stacks(args.backend, folder) as ready:
            stack = ready[args.features]
            base = api_environment(stack, args.features)
            results: dict[str, list[dict[int, WrkResult]]] = {name: [] for name in variants}
            for round_number in range(1, args.rounds + 1):
                for name, settings in variants.items():
                    say(f"round {round_number}: {name}")
                    port = free_port()
                    env = {**base, **settings, "PORT": str(port)}
                    log = folder / f"api-{port}.log"
                    with running([str(BACKPROP), "api"], port, env, log) as url:
                        request = request_to(stack, url, name)
                        results[name].append(measure(request, args.seconds, folder))
    print(report(results, args.rounds, args.seconds, label="variant"))


if __name__ == "__main__":
    main()
