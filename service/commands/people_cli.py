"""The commands for people: a running service through backprop_client, tables drawn by rich.

Every command prints a table for people or, with ``--json``, one JSON document for scripts. An
error answer is one line on stderr (``ApiError``'s text: status, code, field paths) and exit
code 1; so is a service that cannot be reached.
"""

import argparse
import csv
import functools
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import requests
from backprop_client import ApiError, Client, Sweep
from backprop_client.types import FINISHED, SWEEP_FINISHED
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from service.settings import Settings

Command = Callable[[Client, argparse.Namespace], int]
INTERRUPTED = 130  # 128 + SIGINT, as shells report it
DATASET_COLUMNS = ("id", "name", "task", "rows", "features", "classes", "created_at")
JOB_COLUMNS = (
    "id",
    "status",
    "epoch",
    "epochs",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "model_id",
    "model_name",
)
UNBROKEN_COLUMNS = {"id", "status", "task"}
SWEEP_COLUMNS = ("id", "status", "dataset_id", "metric", "goal", "n_trials", "model_name")
TRIAL_COLUMNS = ("trial", "job_id", "status", "params", "metric", "epoch", "seconds")
MODEL_COLUMNS = ("id", "name", "version", "aliases", "task", "job_id", "created_at")


class UsageError(Exception):
    """A mistake in the command line that the service never sees; its text names the option."""


def talks_to_service(command: Command) -> Callable[[Settings, argparse.Namespace], int]:
    """``command(client, args)`` as a ``backprop`` handler: API errors and an unreachable
    service become one line on stderr and exit code 1."""

    @functools.wraps(command)
    def handler(settings: Settings, args: argparse.Namespace) -> int:
        client = Client()
        try:
            return command(client, args)
        except (ApiError, UsageError) as error:
            return fail(str(error))
        except requests.ConnectionError:
            return fail(f"cannot reach the service at {client.base_url} (set BACKPROP_URL)")
        except ConnectionError as error:  # follow(): the event stream kept dropping
            return fail(str(error))

    return handler


def fail(line: str) -> int:
    print(f"backprop: {line}", file=sys.stderr)
    return 1


# Data sets


@talks_to_service
def upload_dataset(client: Client, args: argparse.Namespace) -> int:
    if not Path(args.file).is_file():
        raise UsageError(f"FILE: no file {args.file}")
    dataset = client.upload_dataset(
        path=args.file,
        target=args.target,
        task=args.task,
        name=args.name,
        features=args.features,
        drop=args.drop,
        weight=args.weight,
    )
    return show_record(args, dataset)


@talks_to_service
def list_datasets(client: Client, args: argparse.Namespace) -> int:
    return show_rows(args, "Data sets", DATASET_COLUMNS, client.datasets())


# Jobs


@talks_to_service
def train(client: Client, args: argparse.Namespace) -> int:
    body = job_body(args)
    job = client.submit_job(
        body["dataset_id"], body["network"], body.get("training"), body.get("model_name")
    )
    if not args.follow:
        return show_record(args, job)
    try:
        if not args.json:
            follow_with_progress_bar(client, job)
        job = client.wait(job["id"])
    except KeyboardInterrupt:
        return interrupted(
            f"job {job['id']}", lambda: client.cancel(job["id"]), f"backprop jobs show {job['id']}"
        )
    if args.json:
        print_json(job)
    else:
        print(job_summary(job))
    return 0 if job["status"] == "succeeded" else fail(f"job {job['id']} {job['status']}")


def job_summary(job: dict[str, Any]) -> str:
    """A followed job as it ended, for a person: status and epochs, the last losses and
    accuracies, its error, its model and the command to use it (``--json`` gives the record)."""
    lines = [f"job {job['id']} {job['status']}: {job['epoch']}/{job['epochs']} epochs"]
    metrics = epoch_text(job)
    if metrics:
        lines.append(f"  {metrics}")
    if job.get("error"):
        lines.append(f"  error: {job['error']}")
    if job.get("model_id") is not None:
        named = f" ({job['model_name']})" if job.get("model_name") else ""
        lines.append(f"  model {job['model_id']}{named}")
        lines.append(f"  next: backprop predict {job['model_id']} < rows.csv")
    return "\n".join(lines)


def job_body(args: argparse.Namespace) -> dict[str, Any]:
    """The job from ``--spec`` (if given) with ``--dataset``, ``--layers``, ``--dropout``,
    ``--epochs``, ``--init-from``, ``--replace-output``, ``--class-weight`` and ``--name`` put
    over it."""
    body = read_spec(args.spec) if args.spec else {}
    if args.dataset is not None:
        body["dataset_id"] = args.dataset
    if args.layers is not None:
        body.setdefault("network", {})["layers"] = parse_layers(args.layers)
    if args.init_from is not None:
        body.setdefault("network", {})["init_from"] = args.init_from
    if args.replace_output:
        body.setdefault("network", {})["replace_output"] = True
    if args.dropout is not None:
        set_hidden_dropout(body, args.dropout)
    if args.epochs is not None:
        body.setdefault("training", {})["epochs"] = args.epochs
    if args.class_weight is not None:
        body.setdefault("training", {})["class_weight"] = parse_class_weight(args.class_weight)
    if args.name is not None:
        body["model_name"] = args.name
    for option, field in (("--dataset", "dataset_id"), ("--layers or --init-from", "network")):
        if field not in body:
            raise UsageError(f"{option}: required (or give {field} in --spec)")
    return body


def parse_class_weight(text: str) -> str | dict[str, float]:
    """``balanced``, or ``LABEL=WEIGHT,...`` -> ``{"LABEL": WEIGHT, ...}``; the service checks
    the labels against the data set's classes."""
    if text == "balanced":
        return text
    weights = {}
    for index, pair in enumerate(text.split(",")):
        label, _, weight = pair.partition("=")
        try:
            weights[label.strip()] = float(weight)
        except ValueError:
            raise UsageError(
                f"--class-weight[{index}]: {pair!r} is not LABEL=WEIGHT (or say balanced)"
            ) from None
    return weights


def set_hidden_dropout(body: dict[str, Any], rate: float) -> None:
    """``rate`` on every layer but the last (the service checks its range)."""
    layers = body.get("network", {}).get("layers")
    if not isinstance(layers, list) or len(layers) < 2:
        raise UsageError("--dropout: needs hidden layers (--layers, or network.layers in --spec)")
    for layer in layers[:-1]:
        layer["dropout"] = rate


def read_spec(path: str) -> dict[str, Any]:
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"--spec: {error}") from None
    if not isinstance(body, dict):
        raise UsageError(f"--spec: {path} holds no JSON object (a job body)")
    return body


def parse_layers(text: str) -> list[dict[str, Any]]:
    """``64:relu,10:softmax`` -> ``[{"units": 64, "activation": "relu"}, ...]``; the service
    checks the names and sizes."""
    layers = []
    for index, layer in enumerate(text.split(",")):
        units, colon, activation = layer.strip().partition(":")
        if not (colon and units.strip().isdigit() and activation.strip()):
            raise UsageError(f"--layers[{index}]: {layer!r} is not UNITS:ACTIVATION")
        layers.append({"units": int(units), "activation": activation.strip()})
    return layers


def follow_with_progress_bar(client: Client, job: dict[str, Any]) -> None:
    """A live bar on stderr: epoch/epochs, the losses and accuracy of the last epoch, ETA."""
    columns = (
        TextColumn("job {task.fields[job]} {task.fields[status]} epoch"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        bar = progress.add_task(
            "train", total=job["epochs"], job=job["id"], status=job["status"], metrics=""
        )
        for event in client.follow(job["id"]):
            if event.type == "epoch":
                progress.update(bar, completed=event.data["epoch"], metrics=epoch_text(event.data))
            else:
                progress.update(bar, status=event.data["status"])


def epoch_text(epoch: dict[str, Any]) -> str:
    parts = [
        (label, epoch.get(field))
        for label, field in (
            ("loss", "train_loss"),
            ("val_loss", "val_loss"),
            ("acc", "train_accuracy"),
            ("val_acc", "val_accuracy"),
        )
    ]
    return "  ".join(f"{label} {value:.4f}" for label, value in parts if value is not None)


def interrupted(what: str, cancel: Callable[[], dict[str, Any]], show_command: str) -> int:
    """Ctrl-C while following ``what`` (a job, a sweep): cancel it, or only stop following."""
    try:
        answer = input(f"\ncancel {what}? [y/N] ")
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if answer.strip().lower() in {"y", "yes"}:
        record = cancel()
        print(f"{what}: cancel requested ({record['status']})", file=sys.stderr)
    else:
        print(f"{what} goes on: {show_command}", file=sys.stderr)
    return INTERRUPTED


@talks_to_service
def list_jobs(client: Client, args: argparse.Namespace) -> int:
    return show_rows(args, "Jobs", JOB_COLUMNS, client.jobs())


@talks_to_service
def show_job(client: Client, args: argparse.Namespace) -> int:
    return show_record(args, client.job(args.job_id))


@talks_to_service
def cancel_job(client: Client, args: argparse.Namespace) -> int:
    return show_record(args, client.cancel(args.job_id))


@talks_to_service
def plot(client: Client, args: argparse.Namespace) -> int:
    image_format = "svg" if args.output.lower().endswith(".svg") else "png"
    image = client.loss_plot(args.job_id, image_format, log=args.log)
    Path(args.output).write_bytes(image)
    if args.json:
        return print_json({"job_id": args.job_id, "path": args.output, "bytes": len(image)})
    print(f"job {args.job_id}: loss curves in {args.output} ({len(image)} bytes)")
    return 0


# Sweeps


@talks_to_service
def create_sweep(client: Client, args: argparse.Namespace) -> int:
    body = read_spec(args.spec)
    if args.dataset is not None:
        body["dataset_id"] = args.dataset
    if args.name is not None:
        body["model_name"] = args.name
    sweep = client.create_sweep(body)
    if not args.follow:
        return show_sweep_record(args, sweep)
    sweep_id = sweep["id"]
    try:
        sweep = follow_sweep(client, sweep, progress=not args.json)
    except KeyboardInterrupt:
        return interrupted(
            f"sweep {sweep_id}",
            lambda: client.cancel_sweep(sweep_id),
            f"backprop sweep show {sweep_id}",
        )
    show_sweep_record(args, sweep)
    return 0 if sweep["status"] == "succeeded" else fail(f"sweep {sweep_id} {sweep['status']}")


def follow_sweep(client: Client, sweep: Sweep, progress: bool, poll: float = 0.5) -> Sweep:
    """Poll the sweep until it ends; with ``progress``, a bar on stderr: trials ended of all,
    how many run, the best metric so far."""
    columns = (
        TextColumn("sweep {task.fields[sweep]} {task.fields[status]}: trials"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.fields[best]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("sweep", total=sweep["n_trials"], sweep=sweep["id"], status="", best="")
        while True:
            sweep = client.sweep(sweep["id"])
            bar.update(
                task,
                completed=sum(sweep["counts"].get(state, 0) for state in FINISHED),
                status=f"{sweep['status']}, {sweep['counts'].get('running', 0)} running",
                best=best_so_far(sweep),
            )
            if sweep["status"] in SWEEP_FINISHED:
                return sweep
            time.sleep(poll)


def best_so_far(sweep: Sweep) -> str:
    scored = [entry for entry in sweep["leaderboard"] if entry.get("metric") is not None]
    if not scored:
        return ""
    best = scored[0]  # the leaderboard is sorted by the metric, best first
    return f"best {sweep['metric']} {best['metric']:.4g} (trial {best['trial']})"


@talks_to_service
def list_sweeps(client: Client, args: argparse.Namespace) -> int:
    return show_rows(args, "Sweeps", SWEEP_COLUMNS, client.sweeps())


@talks_to_service
def show_sweep(client: Client, args: argparse.Namespace) -> int:
    return show_sweep_record(args, client.sweep(args.sweep_id))


@talks_to_service
def cancel_sweep(client: Client, args: argparse.Namespace) -> int:
    return show_sweep_record(args, client.cancel_sweep(args.sweep_id))


def show_sweep_record(args: argparse.Namespace, sweep: Sweep) -> int:
    """The sweep's fields, then its leaderboard as a table of its own."""
    if args.json:
        return print_json(sweep)
    show_record(args, {field: value for field, value in sweep.items() if field != "leaderboard"})
    rows = [
        {**entry, "params": " ".join(f"{path}={value}" for path, value in entry["params"].items())}
        for entry in sweep.get("leaderboard", [])
    ]
    return show_rows(args, f"Leaderboard ({sweep['metric']}, best first)", TRIAL_COLUMNS, rows)


# Models


@talks_to_service
def list_models(client: Client, args: argparse.Namespace) -> int:
    return show_rows(args, "Models", MODEL_COLUMNS, client.models())


@talks_to_service
def show_model(client: Client, args: argparse.Namespace) -> int:
    return show_record(args, client.model(model_ref(args.ref)))


@talks_to_service
def predict(client: Client, args: argparse.Namespace) -> int:
    answer = client.predict(model_ref(args.ref), read_rows(sys.stdin))
    if args.json:
        return print_json(answer)
    for prediction in answer["predictions"]:
        print(prediction if not isinstance(prediction, list) else ",".join(map(str, prediction)))
    return 0


EXPLAIN_OPTIONS = ("method", "baseline", "steps", "quadrature")


@talks_to_service
def explain(client: Client, args: argparse.Namespace) -> int:
    options = {name: getattr(args, name) for name in EXPLAIN_OPTIONS}
    options = {name: value for name, value in options.items() if value is not None}
    if args.target is not None:
        options["target"] = model_ref(args.target)  # a digit string is a label or index
    answer = client.explain(model_ref(args.ref), read_rows(sys.stdin), **options)
    if args.json:
        return print_json(answer)
    console = Console()
    for number, row in enumerate(answer["explanations"], 1):
        console.print(explanation_table(number, row, args.top))
    return 0


def explanation_table(number: int, row: dict[str, Any], top: int) -> Table:
    """A row's ``top`` attributions, largest magnitude first, each with a signed bar."""
    heading = f"row {number}: target {row['target']}, f {row['f_x']:.4g}"
    if "f_baseline" in row:
        heading += f" (baseline {row['f_baseline']:.4g})"
    table = Table(title=heading, title_justify="left")
    for column in ("feature", "attribution", ""):
        table.add_column(column, no_wrap=True)
    ranked = sorted(row["attributions"].items(), key=lambda item: -abs(item[1]))[:top]
    largest = max((abs(value) for _, value in ranked), default=0.0) or 1.0
    for feature, value in ranked:
        bar = "█" * round(20 * abs(value) / largest)
        table.add_row(feature, f"{value:+.4g}", f"[{'green' if value >= 0 else 'red'}]{bar}")
    return table


def model_ref(ref: str) -> int | str:
    return int(ref) if ref.isdigit() else ref


def read_rows(lines: Iterable[str]) -> list[list[float]]:
    """The numbers of CSV rows; a first row that is not all numbers is a header, skipped."""
    rows = [row for row in csv.reader(lines) if row]
    if rows and not all(is_number(cell) for cell in rows[0]):
        rows = rows[1:]
    try:
        return [[float(cell) for cell in row] for row in rows]
    except ValueError as error:
        raise UsageError(f"stdin: every row after the header must be numbers ({error})") from None


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# Output


def print_json(document: Any) -> int:
    print(json.dumps(document, indent=2))
    return 0


def show_rows(args: argparse.Namespace, title: str, columns: Sequence[str], rows: list[Any]) -> int:
    if args.json:
        return print_json(rows)
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in UNBROKEN_COLUMNS)
    for row in rows:
        table.add_row(*(cell_text(row.get(column)) for column in columns))
    Console().print(table)
    return 0


def show_record(args: argparse.Namespace, record: dict[str, Any]) -> int:
    if args.json:
        return print_json(record)
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field, value in record.items():
        table.add_row(field, cell_text(value))
    Console().print(table)
    return 0


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
