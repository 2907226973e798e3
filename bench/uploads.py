"""Upload benchmark (issue 10, "Big uploads in bounded memory"): time and peak memory per upload.

    python -m bench.uploads                        # the embedded default (SQLite), as `make run`
    python -m bench.uploads --database postgres    # PostgreSQL 127.0.0.1:5432 + Redis :6379
    python -m bench.uploads --rows 10000 50000     # other sizes (default 10k, 50k, 200k rows)
    python -m bench.uploads --before PATH          # each upload also to PATH's code, in turn
    python -m bench.uploads --repeats 5            # each upload 5 times: median and spread
    python -m bench.uploads --formats csv          # CSV only (default csv, parquet and npz)

``--before`` is a checkout of the code to compare with (``git archive main | tar -x -C PATH``):
each file is uploaded to an API of that tree's code (its own migrations, processes and
``PYTHONPATH``), then to this one's, so that a loaded machine weighs on both alike.
``--repeats N`` uploads each file N times to each tree (a fresh API each time, the trees taking
turns, the first tree alternating), and reports the median with the fastest and slowest: one
upload is one sample, and on this machine two of the same upload differ by a third.

It writes one data set per size in three formats (50 columns: 49 features with six decimals,
as exported data usually has them, and a class label): CSV, Parquet (pyarrow's defaults) and
``.npz`` (float64 ``X``, int64 ``y``). For each file it starts an API of its own, as
bench/serving.py does, with one worker process (``WEB_CONCURRENCY=1``) so that the upload
lands in the process measured, makes one small upload (1,000 rows) of the same format, then
POSTs the file to ``/v1/datasets`` (multipart, as curl ``-F file=@...`` sends it; the body is
built before the clock starts). A fresh process per upload: what one upload leaves behind
(memory the allocator keeps for the next) does not flatter the next one.

Per upload: the client's POST -> 201 time (loopback transfer, parse, store) and MB/s of file,
and the API process's peak RSS increase: Linux's high-water mark (VmHWM in /proc/PID/status),
reset to the current RSS by writing 5 to /proc/PID/clear_refs just before, minus the RSS then.
Targets (issue 29): an increase of at most 2x the file's size, and for CSV at least 100 MB/s.
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from urllib3 import encode_multipart_formdata

from bench.service import Client
from bench.serving import DATABASES, REDIS_URL, machine, met, running_service, say

DEFAULT_ROWS = (10_000, 50_000, 200_000)
COLUMNS = 50
WARMUP_ROWS = 1_000
MAX_MEMORY_RATIO = 2.0
MIN_CSV_MB_PER_SECOND = 100.0
MB = 1e6
FORMATS = ("csv", "parquet", "npz")


def data_set(n_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features (n_rows, COLUMNS - 1), float64 rounded to six decimals, and labels 0..2."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_rows, COLUMNS - 1)).round(6)
    return x, rng.integers(0, 3, n_rows)


def as_table(x: np.ndarray, y: np.ndarray) -> pa.Table:
    columns = {f"x{index}": x[:, index] for index in range(x.shape[1])}
    return pa.table({**columns, "label": y})


def write_files(n_rows: int, folder: Path) -> dict[str, Path]:
    """The data set of ``n_rows`` as ``{format: path}``."""
    x, y = data_set(n_rows)
    stem = folder / f"rows-{n_rows}"
    paths = {fmt: stem.with_suffix(f".{fmt}") for fmt in FORMATS}
    table = as_table(x, y)
    pa_csv.write_csv(table, paths["csv"])
    pq.write_table(table, paths["parquet"])
    np.savez(paths["npz"], X=x, y=y)
    return paths


# --- The API process's memory -----------------------------------------------------------------


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def api_worker_pid() -> int:
    """The worker process of the `backprop api` this process started."""
    for pid in child_pids(os.getpid()):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"api" in command:
            return child_pids(pid)[0]
    raise RuntimeError("no `backprop api` process among this process's children")


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int) -> int:
    """Set the process's high-water mark to its current RSS; that RSS, in bytes."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return status_kib(pid, "VmRSS") * 1024


# --- Uploads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadRun:
    tree: str
    file_format: str
    rows: int
    file_bytes: int
    seconds: float
    rss_before: int
    peak_increase: int

    @property
    def mb_per_second(self) -> float:
        return self.file_bytes / MB / self.seconds

    @property
    def memory_ratio(self) -> float:
        return self.peak_increase / self.file_bytes


def upload(client: Client, path: Path, file_format: str) -> float:
    """POST the file as a data set; seconds to the 201. The multipart body is built first, so
    that only its sending is timed (as curl sends a file)."""
    form = {"task": "classification", "file": (path.name, path.read_bytes())}
    if file_format != "npz":
        form["target"] = "label"
    body, content_type = encode_multipart_formdata(form)
    start = time.perf_counter()
    response = client.http.post(
        f"{client.base_url}/v1/datasets",
        data=body,
        headers={"Content-Type": content_type},
        timeout=600,
    )
    seconds = time.perf_counter() - start
    if response.status_code != 201:
        raise RuntimeError(f"{path.name}: {response.status_code} {response.text[:300]}")
    return seconds


@dataclass(frozen=True)
class Target:
    """Where uploads go: the database, its Redis URL (PostgreSQL's broker), and the code's
    tree, None for this checkout."""

    database: str
    redis_url: str
    tree: Path | None = None

    @property
    def name(self) -> str:
        return "this tree" if self.tree is None else f"before ({self.tree})"

    def service(self, folder: Path):
        options = {"redis_url": self.redis_url} if self.database == "postgres" else {}
        return running_service(self.database, folder, tree=self.tree, **options)


def measured_upload(target: Target, folder: Path, warmup: Path, path: Path, rows: int):
    """One upload to an API of its own, after one small upload of the same format."""
    file_format = path.suffix.removeprefix(".")
    service_folder = Path(tempfile.mkdtemp(prefix=f"{path.stem}-{file_format}-", dir=folder))
    with target.service(service_folder) as (client, _settings):
        pid = api_worker_pid()
        upload(client, warmup, file_format)
        rss_before = reset_peak(pid)
        seconds = upload(client, path, file_format)
        peak = status_kib(pid, "VmHWM") * 1024
    size = path.stat().st_size
    return UploadRun(target.name, file_format, rows, size, seconds, rss_before, peak - rss_before)


def run_uploads(
    targets: list[Target],
    sizes: list[int],
    folder: Path,
    repeats: int = 1,
    formats: tuple[str, ...] = FORMATS,
) -> list[UploadRun]:
    """Each file of ``formats`` uploaded ``repeats`` times to each target, the targets in turn
    (starting with the first, then with the last, and so on)."""
    warmups = write_files(WARMUP_ROWS, folder)
    runs = []
    for rows in sizes:
        say(f"{rows} rows: writing the files")
        for file_format, path in write_files(rows, folder).items():
            if file_format not in formats:
                path.unlink()
                continue
            for repeat in range(repeats):
                for target in in_turn(targets, repeat):
                    say(f"{rows} rows: uploading {path.name} to {target.name} ({repeat + 1})")
                    runs.append(measured_upload(target, folder, warmups[file_format], path, rows))
            path.unlink()
    return runs


def in_turn(targets: list[Target], repeat: int) -> list[Target]:
    """The targets in the order of upload ``repeat`` (from 0): reversed every other time, so
    that neither tree always follows the other."""
    return targets[::-1] if repeat % 2 else targets


# --- The report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Uploads:
    """The uploads of one file to one tree."""

    runs: list[UploadRun]

    @property
    def first(self) -> UploadRun:
        return self.runs[0]

    def seconds(self) -> list[float]:
        return sorted(run.seconds for run in self.runs)

    def median_seconds(self) -> float:
        return statistics.median(self.seconds())

    def median_mb_per_second(self) -> float:
        return self.first.file_bytes / MB / self.median_seconds()

    def largest_peak(self) -> UploadRun:
        return max(self.runs, key=lambda run: run.memory_ratio)

    def counted(self, met_by: Callable[[UploadRun], bool]) -> str:
        """How many of the uploads meet a target, as "met", "not met" or "2 of 3 met"."""
        count = sum(met_by(run) for run in self.runs)
        if count in (0, len(self.runs)):
            return met(count > 0)
        return f"{count} of {len(self.runs)} met"


def fast_enough(run: UploadRun) -> bool:
    return run.mb_per_second >= MIN_CSV_MB_PER_SECOND


def small_enough(run: UploadRun) -> bool:
    return run.memory_ratio <= MAX_MEMORY_RATIO


def grouped(runs: list[UploadRun]) -> list[Uploads]:
    """The runs by tree, format and rows, in the order of their first run."""
    groups: dict[tuple[str, str, int], list[UploadRun]] = {}
    for run in runs:
        groups.setdefault((run.tree, run.file_format, run.rows), []).append(run)
    return [Uploads(group) for group in groups.values()]


def report(runs: list[UploadRun], database: str, load_average: float) -> str:
    """One line per file and tree: the median POST -> 201 of its uploads and their fastest and
    slowest, the largest peak increase, and how many uploads met each target."""
    lines = [
        f"{database}, {machine()} (load average {load_average:.2f} at the start), "
        f"{COLUMNS} columns, pyarrow {pa.__version__}; a new API (one worker process) per upload",
        "",
        "| tree | format | rows | file | uploads | POST -> 201, median (fastest to slowest) "
        "| MB/s (median) | RSS before | largest peak increase | increase / file "
        f"| memory <= {MAX_MEMORY_RATIO:g}x | CSV >= {MIN_CSV_MB_PER_SECOND:g} MB/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for uploads in grouped(runs):
        run, seconds = uploads.first, uploads.seconds()
        spread = f" ({seconds[0]:.2f} to {seconds[-1]:.2f} s)" if len(seconds) > 1 else ""
        speed = uploads.counted(fast_enough) if run.file_format == "csv" else ""
        largest = uploads.largest_peak()
        lines.append(
            f"| {run.tree} | {run.file_format} | {run.rows:,} | {run.file_bytes / MB:.1f} MB "
            f"| {len(seconds)} | {uploads.median_seconds():.2f} s{spread} "
            f"| {uploads.median_mb_per_second():.0f} | {largest.rss_before / MB:.0f} MB "
            f"| {largest.peak_increase / MB:.0f} MB | {largest.memory_ratio:.2f}x "
            f"| {uploads.counted(small_enough)} | {speed} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=sorted(DATABASES), default="embedded")
    parser.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS))
    parser.add_argument("--before", type=Path, help="a checkout to upload to in turn")
    parser.add_argument(
        "--repeats", type=int, default=1, help="uploads of each file to each tree (default 1)"
    )
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument(
        "--redis-url", default=REDIS_URL, help="PostgreSQL's broker (flushed before and after)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load_average = os.getloadavg()[0]
    os.environ["WEB_CONCURRENCY"] = "1"  # every upload in the one process measured
    with tempfile.TemporaryDirectory(prefix="bench-uploads-") as name:
        targets = [Target(args.database, args.redis_url)]
        if args.before is not None:
            targets.insert(0, Target(args.database, args.redis_url, args.before.resolve()))
        runs = run_uploads(targets, args.rows, Path(name), args.repeats, tuple(args.formats))
    print(report(runs, args.database, load_average))


if __name__ == "__main__":
    main()
