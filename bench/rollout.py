"""What a shadow costs the request it shadows (issue 23): a single-row ``/v1`` predict through an
alias without a shadow and through one whose shadow runs every request, under wrk.

    python -m bench.rollout [--rounds 3] [--seconds 10]

One stack of this tree (as bench/contracts.py starts it, SQLite), the digits model (64-64-10)
trained twice through the API; ``digits@plain`` points at version 1, ``digits@shadowed`` at
version 1 with version 2 as its shadow (sample 1.0). wrk (one thread, one connection) sends one
row per request to each alias in turn, ``--rounds`` times; the report gives the median p50 of
each and their difference (target: at most 0.1 ms), and the shadow's compared and dropped
counts at the end (a dropped run is the bounded queue doing its work, not an error).
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import requests

from bench.contracts import REPO, bodies, say, stack_of, trained_digits
from bench.serving import Request, require_wrk, run_wrk


def measure(base_url: str, folder: Path, rounds: int, seconds: int) -> tuple[dict, dict]:
    """The p50 of each alias per round, and the shadow's figures at the end."""
    model = trained_digits(base_url)
    trained_digits(base_url)  # version 2, the shadow
    aliases = {"plain": {"version": 1}, "shadowed": {"version": 1, "shadow": {"version": 2}}}
    for alias, body in aliases.items():
        url = f"{base_url}/v1/models/digits/aliases/{alias}"
        requests.put(url, json=body, timeout=60).raise_for_status()
    body = bodies(model)["instances"]
    p50 = {alias: [] for alias in aliases}
    for round_number in range(1, rounds + 1):
        for alias in aliases:
            say(f"round {round_number}: digits@{alias}")
            url = f"{base_url}/v1/models/digits@{alias}/predict"
            request = Request("ours", alias, url, body)
            run_wrk(request, 1, 2, folder)  # warm-up
            p50[alias].append(run_wrk(request, 1, seconds, folder).p50_ms)
    shown = requests.get(f"{base_url}/v1/models/digits/aliases/shadowed", timeout=60).json()
    return p50, shown["shadow"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args(argv)
    require_wrk()
    with (
        tempfile.TemporaryDirectory(prefix="bench-rollout-") as name,
        stack_of(REPO, Path(name)) as base_url,
    ):
        p50, shadow = measure(base_url, Path(name), args.rounds, args.seconds)
    plain, shadowed = (statistics.median(p50[alias]) for alias in ("plain", "shadowed"))
    verdict = "met" if shadowed - plain <= 0.1 else "not met"
    counts = {key: shadow[key] for key in ("requests_compared", "requests_dropped", "agreement")}
    print(
        f"digits 64-64-10, one row, wrk -t1 -c1, {args.seconds} s a run, median of {args.rounds}"
        f" rounds: p50 without a shadow {plain:.3f} ms, with a shadow of every request"
        f" {shadowed:.3f} ms: +{shadowed - plain:.3f} ms ({verdict}: at most +0.1 ms)."
        f" Shadow: {json.dumps(counts)}"
    )


if __name__ == "__main__":
    main()
