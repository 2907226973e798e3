"""Memory of each process of the service, as a container holds it: the figures behind the
resource requests and limits of deploy/kubernetes/ (issue 27).

    python -m bench.process_memory                 # PostgreSQL + Redis db 13, a few minutes

Starts the stack as the Kubernetes manifests run it, each part on its own (`backprop api` with
WEB_CONCURRENCY=2, `backprop worker`, `backprop webhook-worker`, `backprop dispatcher`, `backprop
flower`), on a throwaway PostgreSQL database, and samples every part's process tree every 0.2 s:
the sum of PSS (proportional set size: a page shared by a forked pool counts once, as the
container's memory cgroup charges it) and of RSS. Phases: idle 5 s after start, then a digits
upload, a digits job of 200 epochs trained to the end, and 2,000 predictions of its model. The
migration (`backprop db upgrade` on an empty database) and the workers' liveness probe (Celery's
ping, docker-compose.yml's health check) are measured alone, by their peak RSS (VmHWM).
Prints one JSON object, MiB: ``{part: {"idle_pss", "peak_pss", "peak_rss"}}``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.serving import free_port, postgres_database, say
from service.commands.supervisor import LocalStack

REDIS_URL = "redis://127.0.0.1:6379/13"  # tests use 1 to 9, the other benchmarks 12, 14, 15
MIB = 1024 * 1024
DIGITS_JOB = {
    "network": {
        "layers": [{"units": 64, "activation": "relu"}, {"units": 10, "activation": "softmax"}]
    },
    "training": {"epochs": 200, "batch_size": 32, "seed": 1},
}


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def tree_memory(root: int) -> tuple[int, int]:
    """(PSS, RSS) in bytes summed over the process tree under ``root``."""
    pss = rss = 0
    for pid in descendants(root):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        fields = {line.split(":")[0]: line.split()[1] for line in rollup if ":" in line}
        pss += int(fields.get("Pss", 0)) * 1024
        rss += int(fields.get("Rss", 0)) * 1024
    return pss, rss


class Sampler(threading.Thread):
    """Every 0.2 s, each part's tree memory; the peaks since start, and the latest."""

    def __init__(self, roots: dict[str, int]):
        super().__init__(daemon=True)
        self.roots = roots
        self.latest = {name: (0, 0) for name in roots}
        self.peak = dict(self.latest)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            for name, root in self.roots.items():
                pss, rss = tree_memory(root)
                self.latest[name] = (pss, rss)
                old = self.peak[name]
                self.peak[name] = (max(old[0], pss), max(old[1], rss))


def peak_rss(env: dict[str, str], code: str) -> int:
    """Peak RSS in bytes (VmHWM) of a Python process that runs ``code``."""
    script = (
        f"{code}\n"
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True
    )
    return int(done.stdout.split()[-1]) * 1024


MIGRATION = "from service.commands.cli import main; main(['db', 'upgrade'])"
# The workers' liveness probe (docker-compose.yml's health check), run in their containers.
CELERY_PING = (
    "import socket; from service.settings import Settings; from service.broker import "
    "create_celery_app; app = create_celery_app(Settings.from_env()); "
    "app.control.ping(destination=['celery@' + socket.gethostname()], timeout=3)"
)


@contextmanager
def flower(env: dict[str, str], folder: Path) -> Iterator[subprocess.Popen]:
    log = (folder / "flower.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.commands.cli", "flower"],
        env={**env, "FLOWER_BASIC_AUTH": "bench:bench", "FLOWER_PORT": str(free_port())},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)


def load(base_url: str, predictions: int) -> None:
    """A digits upload, a digits job trained to the end, ``predictions`` predictions meanwhile."""
    http = requests.Session()
    dataset = http.post(f"{base_url}/v1/datasets", json={"builtin": "digits"}, timeout=60).json()
    job = http.post(
        f"{base_url}/v1/jobs", json={"dataset_id": dataset["id"], **DIGITS_JOB}, timeout=60
    ).json()
    while (state := http.get(f"{base_url}/v1/jobs/{job['id']}", timeout=60).json())[
        "model_id"
    ] is None:
        if state["status"] in {"failed", "cancelled"}:
            raise RuntimeError(state)
        time.sleep(0.5)
    rows = {"instances": [[0.0] * 64] * 10}
    predict = f"{base_url}/v1/models/{state['model_id']}/predict"
    for _ in range(predictions):
        answer = http.post(predict, json=rows, timeout=60)
        answer.raise_for_status()


def measure(predictions: int) -> dict[str, dict[str, float]]:
    with (
        tempfile.TemporaryDirectory() as temporary,
        postgres_database(Path(temporary), REDIS_URL) as urls,
    ):
        folder = Path(temporary)
        port = free_port()
        env = {**os.environ, **urls, "PORT": str(port), "AUTH": "off", "WEB_CONCURRENCY": "2"}
        env["RATE_LIMIT"] = env["PREDICT_RATE_LIMIT"] = "off"
        migration = peak_rss(env, MIGRATION)
        with LocalStack(env, workers=1, logs=folder) as stack, flower(env, folder) as monitor:
            stack.wait_until_ready(f"http://127.0.0.1:{port}")
            roots = {name: process.pid for name, process in stack.processes.items()}
            sampler = Sampler({**roots, "flower": monitor.pid})
            sampler.start()
            time.sleep(5)
            idle = dict(sampler.latest)
            say("idle figures taken; loading")
            load(f"http://127.0.0.1:{port}", predictions)
            time.sleep(1)
            probe = peak_rss(env, CELERY_PING)
            sampler.stopped.set()
            sampler.join()
    figures = {
        name: {
            "idle_pss": round(idle[name][0] / MIB, 1),
            "peak_pss": round(sampler.peak[name][0] / MIB, 1),
            "peak_rss": round(sampler.peak[name][1] / MIB, 1),
        }
        for name in sampler.roots
    }
    figures["migrate"] = {"peak_rss": round(migration / MIB, 1)}
    figures["celery_ping_probe"] = {"peak_rss": round(probe / MIB, 1)}
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=2000)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.predictions), indent=1))


if __name__ == "__main__":
    main()
