"""What an API process holds once its app is built, and what a full collection of the garbage
collector costs it: the modules (``len(sys.modules)``), the objects the collector tracks
(``len(gc.get_objects())``), the CPU of one ``gc.collect()`` (median of ``--collections``) and
the RSS, each measured in a new interpreter that builds the app (``create_app``) on a throwaway
SQLite database.

    python -m bench.start_up_objects [--rounds 5] [--compare-with DIR]

``--compare-with`` names another tree of the repository (e.g. an earlier commit's, made with
``git archive <commit> | tar -x -C DIR``); the trees then take turns, round after round, so
that a loaded machine weighs on both alike. The modules and objects do not depend on the load;
the collection's CPU does, a little.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"matplotlib", "scipy", "pyarrow"}
CHILD = """
import gc, json, resource, sys, time
from service.api.app import create_app
create_app()
gc.collect()
cpu = []
for _ in range({collections}):
    started = time.process_time()
    gc.collect()
    cpu.append((time.process_time() - started) * 1e3)
print(json.dumps({{
    "modules": len(sys.modules),
    "objects": len(gc.get_objects()),
    "collection_cpu_ms": sorted(cpu)[len(cpu) // 2],
    "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "heavy": sorted({{name.split(".")[0] for name in sys.modules}} & {heavy}),
}}))
"""


def measure(tree: Path, collections: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-start-up-") as folder:
        env = {
            **os.environ,
            "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'client'}",
            "DATABASE_URL": f"sqlite:///{Path(folder) / 'backprop.sqlite'}",
        }
        found = subprocess.run(
            [sys.executable, "-c", CHILD.format(collections=collections, heavy=HEAVY)],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(found.stdout.strip().splitlines()[-1])


def report(results: dict[str, list[dict]]) -> str:
    lines = [
        "| tree | modules | objects | full collection CPU ms (median of rounds) | per round"
        " | max RSS MiB | imported of matplotlib, scipy, pyarrow |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for tree, found in results.items():
        cpu = [round(result["collection_cpu_ms"], 1) for result in found]
        last = found[-1]
        rss = statistics.median(result["max_rss_mib"] for result in found)
        lines.append(
            f"| {tree} | {last['modules']:,} | {last['objects']:,} | {statistics.median(cpu):.1f}"
            f" | {', '.join(map(str, cpu))} | {rss:.0f}"
            f" | {', '.join(last['heavy']) or 'none'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--collections", type=int, default=5, help="per round: gc.collect()s")
    parser.add_argument("--compare-with", type=Path, help="another tree of the repository")
    args = parser.parse_args(argv)
    trees = {"this tree": REPO}
    if args.compare_with:
        trees = {str(args.compare_with): args.compare_with.resolve(), **trees}
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            results[name].append(measure(tree, args.collections))
    print(report(results))


if __name__ == "__main__":
    main()
