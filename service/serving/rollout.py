"""Rolling a version out on an alias: which version of a canary split answers a request, the
requests each version served, and the shadow runs that compare a version with the one that
answered without ever answering themselves.

No Flask. A split is ``[(version, weight), ...]``. A request with a routing key goes to the
version chosen by weighted rendezvous hashing of the alias, the key and each version (Schindler's
"HRW"): every version draws ``weight / -ln(u)`` with ``u`` a stable hash of the three, and the
largest draw wins. So the choice is the same in every process and after restarts, each version
gets its weight's share of keys, and raising one version's weight only moves keys to it: its
draws grow and no other's do.

Counts are kept per process and published at most once a second (``CountPublisher``): added to a
Redis hash when the broker is Redis, else written as this process's totals in a file of a folder
that every process of the host shares. Readers sum them.
"""

import hashlib
import json
import logging
import math
import os
import queue
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PrometheusCounter

from model_core import Model
from service.db.models import ModelAlias

logger = logging.getLogger(__name__)

HASH_SCALE = 2.0**64
PUBLISH_SECONDS = 1.0
REDIS_PREFIX = "backprop:rollout:"
REDIS_TTL_SECONDS = 90 * 24 * 3600
# Fields of a split's counts: requests served per version, and the shadow's figures.
SERVED = "served:"
SHADOW_MAX = "shadow:abs_max:"  # one field per process: the largest difference it saw


@dataclass(frozen=True)
class ShadowMetrics:
    """The shadows' figures for /metrics, per tenant, name, alias and shadow version."""

    requests: PrometheusCounter
    rows: PrometheusCounter
    abs_difference: PrometheusCounter

    @classmethod
    def registered(cls, registry: CollectorRegistry) -> "ShadowMetrics":
        labels = ["tenant", "name", "alias", "version"]
        return cls(
            PrometheusCounter(
                "backprop_shadow_requests",
                "Requests a shadow version ran on (compared) or not (dropped: its queue full)",
                [*labels, "outcome"],
                registry=registry,
            ),
            PrometheusCounter(
                "backprop_shadow_rows",
                "Rows a classifier's shadow predicted, agreeing with the answer or not",
                [*labels, "agreed"],
                registry=registry,
            ),
            PrometheusCounter(
                "backprop_shadow_abs_difference",
                "Sum of |shadow output - answered output| over a regression's shadow values",
                labels,
                registry=registry,
            ),
        )


def hashed_unit(*parts: str) -> float:
    """A number in (0, 1) that ``parts`` always hash to, in every process."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / HASH_SCALE


def pick_version(
    arms: Sequence[tuple[int, int]],
    alias_key: str,
    routing_key: str | None,
    rng: random.Random = random,
) -> int:
    """The version of ``arms`` (``(version, weight)``) that answers: by weighted rendezvous
    hashing of ``alias_key`` and ``routing_key``, or at random by weight without a key."""
    if len(arms) == 1:
        return arms[0][0]
    if routing_key is None:
        versions, weights = zip(*arms, strict=True)
        return rng.choices(versions, weights=weights)[0]
    draws = {
        version: weight / -math.log(hashed_unit(alias_key, routing_key, str(version)))
        for version, weight in arms
    }
    return max(draws, key=draws.__getitem__)


def split_key(tenant: str, name: str, alias: str, split_id: str) -> str:
    """Where one setting of an alias keeps its counts."""
    return f"{tenant}/{name}@{alias}/{split_id}"


# --- Counts -------------------------------------------------------------------------------


class CountStore:
    """Where processes publish their counts, and where they are summed."""

    def publish(
        self, deltas: Mapping[str, Counter], totals: Mapping[str, dict], process: str
    ) -> None:
        """Add ``deltas`` (or keep ``totals``, this ``process``'s counts since it started)."""
        raise NotImplementedError

    def read(self, key: str) -> dict[str, float]:
        raise NotImplementedError


class RedisCounts(CountStore):
    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def publish(
        self, deltas: Mapping[str, Counter], totals: Mapping[str, dict], process: str
    ) -> None:
        pipeline = self.client.pipeline(transaction=False)
        for key, fields in deltas.items():
            for field, amount in fields.items():
                if field.startswith(SHADOW_MAX):
                    pipeline.hset(REDIS_PREFIX + key, field, totals[key][field])
                else:
                    pipeline.hincrbyfloat(REDIS_PREFIX + key, field, amount)
            pipeline.expire(REDIS_PREFIX + key, REDIS_TTL_SECONDS)
        pipeline.execute()

    def read(self, key: str) -> dict[str, float]:
        stored = self.client.hgetall(REDIS_PREFIX + key)
        return merged([{field.decode(): float(value) for field, value in stored.items()}])


class FileCounts(CountStore):
    """One JSON file of totals per process in ``folder``: the processes of one host."""

    def __init__(self, folder: Path):
        self.folder = folder

    def publish(
        self, deltas: Mapping[str, Counter], totals: Mapping[str, dict], process: str
    ) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{process.replace(':', '-')}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(totals))
        os.replace(temporary, path)

    def read(self, key: str) -> dict[str, float]:
        found = []
        for path in self.folder.glob("*.json"):
            try:
                found.append(json.loads(path.read_text()).get(key, {}))
            except (OSError, ValueError):  # a file being replaced: its totals come next time
                continue
        return merged(found)


def merged(parts: list[Mapping[str, float]]) -> dict[str, float]:
    """Counts summed over processes; each process's largest difference, the largest of all."""
    total: dict[str, float] = {}
    for part in parts:
        for field, value in part.items():
            if field.startswith(SHADOW_MAX):
                total[SHADOW_MAX] = max(total.get(SHADOW_MAX, 0.0), value)
            else:
                total[field] = total.get(field, 0.0) + value
    return total


class CountPublisher:
    """This process's counts, published by a background thread at most every
    ``PUBLISH_SECONDS`` (started on first use in each process, so after a server forks its
    workers).

    A request only appends to a deque (atomic, no lock: with many requests in flight a lock on
    every one was contended); the publishing side folds what arrived into the totals."""

    def __init__(self, store: CountStore, process: str | None = None):
        self.store = store
        self.named_process = process
        self.arrivals: deque[tuple[str, str, float]] = deque()
        self.lock = threading.Lock()  # the folding side only: publish and read
        self.totals: dict[str, dict[str, float]] = {}
        self.pending: dict[str, Counter] = {}
        self.thread_pid: int | None = None

    @property
    def process(self) -> str:
        """This process, as its counts are published: host and pid, read when asked (a
        server may fork its workers after the publisher is made)."""
        return self.named_process or f"{socket.gethostname()}:{os.getpid()}"

    @property
    def process_field(self) -> str:
        return f"{SHADOW_MAX}{self.process}"

    def add(self, key: str, field: str, amount: float = 1.0) -> None:
        self.arrivals.append((key, field, amount))
        self._start()

    def raise_max(self, key: str, value: float) -> None:
        """Keep ``value`` as this process's largest difference under ``key`` if it is one."""
        self.arrivals.append((key, SHADOW_MAX, value))
        self._start()

    def _start(self) -> None:
        if self.thread_pid != os.getpid():
            self.thread_pid = os.getpid()
            threading.Thread(target=self._run, name="rollout-counts", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(PUBLISH_SECONDS)
            self.publish()

    def _fold(self) -> None:
        """Move what arrived into the totals and the pending deltas (under ``lock``)."""
        while self.arrivals:
            key, field, amount = self.arrivals.popleft()
            totals = self.totals.setdefault(key, {})
            if field == SHADOW_MAX:
                field = self.process_field
                if amount <= totals.get(field, -1.0):
                    continue
                totals[field] = amount
                self.pending.setdefault(key, Counter())[field] += 0.0
                continue
            totals[field] = totals.get(field, 0.0) + amount
            self.pending.setdefault(key, Counter())[field] += amount

    def publish(self) -> None:
        """Publish what was added since the last time; a store that is away is logged and
        tried again with everything at the next tick."""
        with self.lock:
            self._fold()
            deltas, self.pending = self.pending, {}
            totals = {key: dict(fields) for key, fields in self.totals.items()}
        if not deltas:
            return
        try:
            self.store.publish(deltas, totals, self.process)
        except (OSError, redis.RedisError) as error:
            logger.warning("rollout counts not published, kept for the next try: %s", error)
            with self.lock:
                for key, fields in deltas.items():
                    self.pending.setdefault(key, Counter()).update(fields)

    def read(self, key: str) -> dict[str, float]:
        """Every process's counts under ``key``, this one's published first."""
        self.publish()
        return self.store.read(key)


# --- Shadows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShadowRun:
    """One request to run again on the shadow: its rows, what the answering version said, and
    how to get the shadow's model (from the process's cache, read on a miss off the request)."""

    key: str
    labels: tuple[str, str, str, str]  # tenant, name, alias, shadow version
    load: Callable[[], Model]
    x: np.ndarray
    answered: np.ndarray
    max_bytes: int


# A shadow batch: what one wake of the shadow thread takes, and how long it waits for more.
BATCH_SECONDS = 0.02
MAX_BATCH_RUNS = 256


def grouped(runs: Sequence[ShadowRun]) -> list[list[ShadowRun]]:
    """``runs`` by alias setting and shadow version, in order of arrival."""
    groups: dict[tuple, list[ShadowRun]] = {}
    for run in runs:
        groups.setdefault((run.key, run.labels), []).append(run)
    return list(groups.values())


class ShadowRunner:
    """Runs shadows off the response path: a bounded queue drained by one background thread.
    A full queue drops the run and counts it; a request never waits for its shadow."""

    def __init__(
        self,
        counts: CountPublisher,
        capacity: int,
        outputs: Callable[[Model, np.ndarray, int], np.ndarray],
        metrics: ShadowMetrics | None = None,
    ):
        self.counts = counts
        self.outputs = outputs
        self.metrics = metrics
        self.queue: queue.Queue[ShadowRun] = queue.Queue(maxsize=capacity)
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def submit(self, run: ShadowRun) -> bool:
        """Queue ``run``; False (and counted as dropped) when the queue is full."""
        try:
            self.queue.put_nowait(run)
        except queue.Full:
            self.counts.add(run.key, "shadow:dropped")
            if self.metrics:
                self.metrics.requests.labels(*run.labels, "dropped").inc()
            return False
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._drain, name="shadows", daemon=True)
                self.thread.start()
        return True

    def _drain(self) -> None:
        """Take what is queued in batches: after the first run, wait ``BATCH_SECONDS`` for more,
        then run each shadow once over all its queued rows. A forward pass of one row is mostly
        Python overhead, held under the GIL against the requests of this process; in batches
        that overhead is paid once per batch, not once per request."""
        while True:
            runs = [self.queue.get()]
            time.sleep(BATCH_SECONDS)
            while len(runs) < MAX_BATCH_RUNS:
                try:
                    runs.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            for group in grouped(runs):
                try:
                    self.compare(group)
                except Exception:  # a shadow must never take its thread down with it
                    logger.exception("shadow run of %s failed", group[0].key)
            for _ in runs:
                self.queue.task_done()

    def compare(self, runs: Sequence[ShadowRun]) -> None:
        """Predict with the shadow of ``runs`` (one alias setting, one shadow) over all their
        rows and count how far it is from what was answered: identical labels for a
        classifier, absolute differences of the outputs for a regression."""
        run = runs[0]
        model = run.load()
        x = np.concatenate([each.x for each in runs])
        answered = np.concatenate([each.answered for each in runs])
        shadowed = self.outputs(model, x, run.max_bytes)
        self.counts.add(run.key, "shadow:requests", len(runs))
        self.counts.add(run.key, "shadow:rows", len(shadowed))
        if self.metrics:
            self.metrics.requests.labels(*run.labels, "compared").inc(len(runs))
        if model.task == "classification":
            agreed = int(np.sum(shadowed == answered))
            self.counts.add(run.key, "shadow:agreed", agreed)
            if self.metrics:
                self.metrics.rows.labels(*run.labels, "true").inc(agreed)
                self.metrics.rows.labels(*run.labels, "false").inc(len(shadowed) - agreed)
            return
        differences = np.abs(
            np.asarray(shadowed, dtype=np.float64) - np.asarray(answered, dtype=np.float64)
        )
        self.counts.add(run.key, "shadow:values", differences.size)
        self.counts.add(run.key, "shadow:abs_sum", float(differences.sum()))
        self.counts.raise_max(run.key, float(differences.max()))
        if self.metrics:
            self.metrics.abs_difference.labels(*run.labels).inc(float(differences.sum()))

    def wait(self) -> None:
        """Until every queued run is done (tests, and a graceful stop)."""
        self.queue.join()


def shadow_figures(counts: Mapping[str, float], task: str) -> dict[str, Any]:
    """What ``GET .../aliases/{alias}`` shows of a shadow: requests compared and dropped, and
    the agreement (classification) or the mean and max absolute difference (regression)."""
    figures: dict[str, Any] = {
        "requests_compared": int(counts.get("shadow:requests", 0)),
        "requests_dropped": int(counts.get("shadow:dropped", 0)),
        "rows_compared": int(counts.get("shadow:rows", 0)),
    }
    if task == "classification":
        rows = counts.get("shadow:rows", 0)
        figures["agreement"] = counts.get("shadow:agreed", 0) / rows if rows else None
    else:
        values = counts.get("shadow:values", 0)
        figures["mean_abs_difference"] = (
            counts.get("shadow:abs_sum", 0) / values if values else None
        )
        figures["max_abs_difference"] = counts.get(SHADOW_MAX) if values else None
    return figures


def alias_view(
    row: ModelAlias, shadow_task: str | None, counts: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """An alias as ``GET .../aliases/{alias}`` shows it: its versions with the requests each
    served since the split was set (in ``counts``; none given: none yet), and its shadow with
    its figures (which need the shadow version's ``shadow_task``)."""
    counts = counts or {}
    served = served_counts(counts)
    arms = row.split or [{"version": row.version, "weight": 100}]
    shadow = None
    if row.shadow:
        shadow = {**row.shadow, **shadow_figures(counts, shadow_task)}
    return {
        "name": row.name,
        "alias": row.alias,
        "version": row.version,
        "versions": [{**arm, "served": served.get(arm["version"], 0)} for arm in arms],
        "shadow": shadow,
    }


def served_counts(counts: Mapping[str, float]) -> dict[int, int]:
    """Requests served per version since the split was set."""
    return {
        int(field.removeprefix(SERVED)): int(value)
        for field, value in counts.items()
        if field.startswith(SERVED)
    }


# --- The promotion gate --------------------------------------------------------------------

# Evaluation figures a gate may require, and whether a larger one is better.
GATE_METRICS = {
    "classification": {"accuracy": True, "loss": False},
    "regression": {"r2": True, "loss": False, "mse": False, "mae": False},
}


def gate_failures(
    require: Mapping[str, Mapping[str, float]],
    candidate: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    task: str,
) -> dict[str, str]:
    """Each requirement the candidate's evaluation misses, by its path: a bound
    (``require.accuracy.min``: ``0.91 < 0.95``) or, given the current version's evaluation, a
    metric on which the candidate is worse (``not_worse_than_current.loss``)."""
    failed = {}
    for metric, bounds in require.items():
        value = candidate[metric]
        if value is None:
            failed[f"require.{metric}"] = f"the evaluation has no {metric} (one row?)"
            continue
        if "min" in bounds and value < bounds["min"]:
            failed[f"require.{metric}.min"] = f"{value:.6g} < {bounds['min']:.6g}"
        if "max" in bounds and value > bounds["max"]:
            failed[f"require.{metric}.max"] = f"{value:.6g} > {bounds['max']:.6g}"
        if current is None or current[metric] is None:
            continue
        higher_is_better = GATE_METRICS[task][metric]
        worse = value < current[metric] if higher_is_better else value > current[metric]
        if worse:
            failed[f"not_worse_than_current.{metric}"] = (
                f"{value:.6g} against the current version's {current[metric]:.6g}"
            )
    return failed
