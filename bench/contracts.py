"""What model contracts (issue 22) cost a prediction: a single-row ``/v1`` predict with
``instances`` before and after, and with ``records`` beside ``instances``, under wrk.

    python -m bench.contracts --before PATH [--rounds 3] [--seconds 10]

``--before`` is a checkout of the code to compare with (``git worktree add /tmp/before
60de704``). Each round starts a stack of each tree in turn (interleaved, so that a noisy
machine weighs on both alike): ``backprop db upgrade`` and the API, a worker and the dispatcher,
as ``make run`` does, every process of the tree's own code (``PYTHONPATH``), on a throwaway
SQLite database; trains the digits model (64-64-10) through the API; then wrk (one thread, as
bench/serving.py) sends one row per request at 1 and 16 connections: ``instances`` to both
trees, and ``records`` (the signature's 64 names) to this one. The report gives the median of
the rounds, and the two ratios the issue states: instances after/before (within 5%), records/
instances (within 15%).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import requests

from bench.serving import Request, WrkResult, free_port, relu_network, require_wrk, run_wrk
from service.commands.supervisor import LocalStack
from service.datasets.samples import load_sample

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONNECTIONS = (1, 16)
DIGITS_JOB = {
    "network": relu_network(64),
    "training": {"epochs": 5, "batch_size": 32, "seed": 1},
    "model_name": "digits",
}


def say(message: str) -> None:
    print(f"[bench.contracts] {message}", file=sys.stderr, flush=True)


@contextmanager
def stack_of(tree: Path, folder: Path, settings: dict[str, str] | None = None) -> Iterator[str]:
    """A migrated stack whose every process runs ``tree``'s code, with ``settings`` (environment
    variables) on top of the benchmarks'; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "DATABASE_URL": f"sqlite:///{folder / 'backprop.sqlite'}",
        "BROKER_URL": f"sqla+sqlite:///{folder / 'broker.sqlite'}",
        "PORT": str(port),
        "AUTH": "off",
        "ACCESS_LOG": "off",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT": "off",
        "PREDICT_RATE_LIMIT": "off",
        **(settings or {}),
    }
    subprocess.run([str(BIN / "backprop"), "db", "upgrade"], env=env, check=True, cwd=tree)
    base_url = f"http://127.0.0.1:{port}"
    here = Path.cwd()
    os.chdir(tree)  # `python -m` puts the working folder first on sys.path
    try:
        with LocalStack(env, workers=1, logs=folder) as stack:
            stack.wait_until_ready(base_url, timeout=180)
            yield base_url
    finally:
        os.chdir(here)


def trained_digits(base_url: str) -> dict:
    """The digits model, trained through the API; its detail (with a signature after 22)."""
    http = requests.Session()
    dataset = answered(http.post(f"{base_url}/v1/datasets", json={"builtin": "digits"}, timeout=60))
    body = {**DIGITS_JOB, "dataset_id": dataset["id"]}
    job = answered(http.post(f"{base_url}/v1/jobs", json=body, timeout=60))
    while job["status"] not in {"succeeded", "failed", "cancelled"}:
        time.sleep(0.2)
        job = http.get(f"{base_url}/v1/jobs/{job['id']}", timeout=60).json()
    if job["status"] != "succeeded":
        raise RuntimeError(f"the digits job ended {job['status']}: {job.get('error')}")
    return http.get(f"{base_url}/v1/models/{job['model_id']}", timeout=60).json()


def answered(response: requests.Response) -> dict:
    if not response.ok:
        raise RuntimeError(
            f"{response.request.url} answered {response.status_code}: {response.text}"
        )
    return response.json()


def bodies(model: dict) -> dict[str, bytes]:
    """One digits row as ``instances`` and, when the model has a signature, as ``records``."""
    row = load_sample("digits").X[0].astype(np.float64).tolist()
    forms = {"instances": json.dumps({"instances": [row]}).encode()}
    if "signature" in model:
        names = [feature["name"] for feature in model["signature"]["inputs"]]
        forms["records"] = json.dumps({"records": [dict(zip(names, row, strict=True))]}).encode()
    return forms


def check_same_answer(url: str, forms: dict[str, bytes]) -> None:
    answers = {
        form: requests.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=60
        )
        for form, body in forms.items()
    }
    for answer in answers.values():
        answer.raise_for_status()
    predictions = {json.dumps(answer.json()["probabilities"]) for answer in answers.values()}
    if len(predictions) != 1:
        raise RuntimeError(f"the forms answer differently: {predictions}")


def measure_tree(tree: Path, seconds: int, folder: Path) -> dict[tuple[str, int], WrkResult]:
    with stack_of(tree, folder) as base_url:
        model = trained_digits(base_url)
        url = f"{base_url}/v1/models/digits@production/predict"
        requests.put(
            f"{base_url}/v1/models/digits/aliases/production", json={"version": 1}, timeout=60
        ).raise_for_status()
        forms = bodies(model)
        check_same_answer(url, forms)
        results = {}
        for form, body in forms.items():
            request = Request("ours", form, url, body)
            run_wrk(request, max(CONNECTIONS), 2, folder)  # warm-up
            for connections in CONNECTIONS:
                results[form, connections] = run_wrk(request, connections, seconds, folder)
        return results


def median(results: list[dict], key: tuple[str, int], figure: str) -> float:
    return statistics.median(getattr(result[key], figure) for result in results)


def report(before: list[dict], after: list[dict], rounds: int, seconds: int) -> str:
    lines = [
        f"Digits 64-64-10, one row, `/v1/models/digits@production/predict`, wrk -t1, {seconds} s"
        f" per run, median of {rounds} interleaved rounds:",
        "",
        "| request | connections | before: req/s | after: req/s | after/before"
        " | before: p50 ms | after: p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for form in ("instances", "records"):
        for connections in CONNECTIONS:
            key = (form, connections)
            now = median(after, key, "requests_per_second")
            p50 = median(after, key, "p50_ms")
            if key in before[0]:
                then = median(before, key, "requests_per_second")
                then_p50 = median(before, key, "p50_ms")
                was = f"{then:.0f} | {now:.0f} | {now / then:.3f} | {then_p50:.2f}"
            else:
                was = f"n/a | {now:.0f} | n/a | n/a"
            lines.append(f"| {form} | {connections} | {was} | {p50:.2f} |")
    lines.append("")
    for connections in CONNECTIONS:
        ratio = median(after, ("instances", connections), "requests_per_second") / median(
            before, ("instances", connections), "requests_per_second"
        )
        records = median(after, ("records", connections), "requests_per_second") / median(
            after, ("instances", connections), "requests_per_second"
        )
        lines.append(
            f"- {connections} connection(s): instances after/before {ratio:.3f}"
            f" ({'met' if ratio >= 0.95 else 'not met'}: within 5%), records/instances"
            f" {records:.3f} ({'met' if records >= 0.85 else 'not met'}: within 15%)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout to compare with")
    parser.add_argument(
        "--after", type=Path, default=REPO, help="the checkout measured (default: this one)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args(argv)
    require_wrk()
    before, after = [], []
    for round_number in range(1, args.rounds + 1):
        for tree, results in ((args.before.resolve(), before), (args.after.resolve(), after)):
            say(f"round {round_number}: {tree}")
            with tempfile.TemporaryDirectory(prefix="bench-contracts-") as folder:
                results.append(measure_tree(tree, args.seconds, Path(folder)))
    print(report(before, after, args.rounds, args.seconds))


if __name__ == "__main__":
    main()
