"""The arguments of the commands for people (``backprop datasets|train|jobs|sweep|models|predict|
explain|plot``).

Only argparse here: ``service.commands.cli`` builds its parser from this module for every command,
the server's too; the commands themselves (``service.commands.people_cli``, on backprop_client and
rich) are imported only when one of them runs.
"""

import argparse
from collections.abc import Callable
from typing import Any

HandlerFor = Callable[[str], Any]


def add_people_commands(commands: argparse._SubParsersAction, handler_for: HandlerFor) -> None:
    """The commands that talk to a running service ($BACKPROP_URL, $BACKPROP_API_KEY), each
    run by ``handler_for(function name)``."""
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="one JSON document on stdout")
    add_dataset_commands(commands, handler_for, output)
    add_train_command(commands, handler_for, output)
    add_job_commands(commands, handler_for, output)
    add_sweep_commands(commands, handler_for, output)
    add_model_commands(commands, handler_for, output)
    predict = commands.add_parser(
        "predict", parents=[output], help="predict the CSV rows on stdin (header optional)"
    )
    predict.add_argument("ref", metavar="REF", help="a model id, NAME, NAME:VERSION or NAME@ALIAS")
    predict.set_defaults(handler=handler_for("predict"))
    add_explain_command(commands, handler_for, output)
    plot = commands.add_parser("plot", parents=[output], help="a job's loss curves as PNG or SVG")
    plot.add_argument("job_id", type=int, metavar="JOB")
    plot.add_argument("-o", "--output", required=True, help="the file: .png or .svg")
    plot.add_argument("--log", action="store_true", help="a log scale for the loss")
    plot.set_defaults(handler=handler_for("plot"))


def add_explain_command(commands, handler_for: HandlerFor, output) -> None:
    explain = commands.add_parser(
        "explain",
        parents=[output],
        help="which features drove the prediction of each CSV row on stdin (header optional)",
    )
    explain.add_argument("ref", metavar="REF", help="a model id, NAME, NAME:VERSION or NAME@ALIAS")
    explain.add_argument(
        "--method",
        choices=["integrated_gradients", "gradient", "gradient_x_input", "shapley"],
        default=None,
        help="integrated_gradients by default",
    )
    explain.add_argument(
        "--target", default=None, help='"predicted" (the default), a class label or an output index'
    )
    explain.add_argument(
        "--baseline", choices=["mean", "zeros"], default=None, help="IG and shapley: from where"
    )
    explain.add_argument("--steps", type=int, default=None, help="IG: quadrature points (64)")
    explain.add_argument(
        "--quadrature", choices=["gauss_legendre", "trapezoid"], default=None, help="IG only"
    )
    explain.add_argument(
        "--top", type=int, default=10, help="features shown per row, largest first (10)"
    )
    explain.set_defaults(handler=handler_for("explain"))


def add_dataset_commands(commands, handler_for: HandlerFor, output) -> None:
    actions = commands.add_parser("datasets", help="upload and list data sets").add_subparsers(
        dest="action", required=True
    )
    upload = actions.add_parser("upload", parents=[output], help="upload a CSV, Parquet or .npz")
    upload.add_argument("file", metavar="FILE")
    upload.add_argument("--target", required=True, help="the target column(s), comma-separated")
    upload.add_argument(
        "--task",
        choices=["classification", "regression"],
        default=None,
        help="by default inferred from the target: text, booleans or at most 20 distinct whole "
        "numbers are classification, other numbers regression",
    )
    upload.add_argument("--name", default=None)
    columns = upload.add_mutually_exclusive_group()
    columns.add_argument("--features", default=None, help="the feature columns, A,B,...")
    columns.add_argument("--drop", default=None, help="columns to leave out, C,...")
    upload.add_argument(
        "--weight",
        default=None,
        metavar="COLUMN",
        help="the column of each row's weight in the loss (finite numbers >= 0)",
    )
    upload.set_defaults(handler=handler_for("upload_dataset"))
    listing = actions.add_parser("list", parents=[output], help="every data set")
    listing.set_defaults(handler=handler_for("list_datasets"))


def add_train_command(commands, handler_for: HandlerFor, output) -> None:
    train = commands.add_parser("train", parents=[output], help="submit a training job")
    train.add_argument("--dataset", type=int, metavar="ID", help="the data set's id")
    train.add_argument("--layers", help="UNITS:ACTIVATION,... e.g. 64:relu,10:softmax")
    train.add_argument("--epochs", type=int)
    train.add_argument(
        "--dropout",
        type=float,
        metavar="P",
        help="dropout P (0 <= P < 1) on every hidden layer, while training only",
    )
    train.add_argument("--spec", metavar="JOB.JSON", help="a job body; the options above win")
    train.add_argument("--name", help="register the model under this name")
    train.add_argument(
        "--init-from",
        metavar="REF",
        help="fine-tune a registered model (an id, NAME, NAME:VERSION or NAME@ALIAS): start from"
        " its weights; --layers then defaults to its layers",
    )
    train.add_argument(
        "--replace-output",
        action="store_true",
        help="with --init-from: a new output layer, for a data set with other classes",
    )
    train.add_argument(
        "--class-weight",
        metavar="WEIGHTS",
        help="balanced, or LABEL=WEIGHT,... (a label left out weighs 1)",
    )
    train.add_argument(
        "--follow",
        action="store_true",
        help="a live progress bar until it ends, then a summary (--json: the job record)",
    )
    train.set_defaults(handler=handler_for("train"))


def add_job_commands(commands, handler_for: HandlerFor, output) -> None:
    actions = commands.add_parser("jobs", help="list, show and cancel jobs").add_subparsers(
        dest="action", required=True
    )
    actions.add_parser("list", parents=[output], help="every job").set_defaults(
        handler=handler_for("list_jobs")
    )
    for action, function, what in (
        ("show", "show_job", "one job"),
        ("cancel", "cancel_job", "cancel a queued or running job"),
    ):
        command = actions.add_parser(action, parents=[output], help=what)
        command.add_argument("job_id", type=int, metavar="ID")
        command.set_defaults(handler=handler_for(function))


def add_sweep_commands(commands, handler_for: HandlerFor, output) -> None:
    actions = commands.add_parser(
        "sweep", help="hyperparameter sweeps: create, list, show, cancel"
    ).add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[output], help="start a sweep")
    create.add_argument(
        "--spec", required=True, metavar="SWEEP.JSON", help="the body of POST /v1/sweeps"
    )
    create.add_argument("--dataset", type=int, metavar="ID", help="the data set's id")
    create.add_argument("--name", help="register the best trial's model under this name")
    create.add_argument(
        "--follow", action="store_true", help="a live progress bar, then the leaderboard"
    )
    create.set_defaults(handler=handler_for("create_sweep"))
    actions.add_parser("list", parents=[output], help="every sweep").set_defaults(
        handler=handler_for("list_sweeps")
    )
    for action, function, what in (
        ("show", "show_sweep", "one sweep and its leaderboard"),
        ("cancel", "cancel_sweep", "cancel its queued and running trials"),
    ):
        command = actions.add_parser(action, parents=[output], help=what)
        command.add_argument("sweep_id", type=int, metavar="ID")
        command.set_defaults(handler=handler_for(function))


def add_model_commands(commands, handler_for: HandlerFor, output) -> None:
    actions = commands.add_parser("models", help="list and show models").add_subparsers(
        dest="action", required=True
    )
    actions.add_parser("list", parents=[output], help="every model").set_defaults(
        handler=handler_for("list_models")
    )
    show = actions.add_parser("show", parents=[output], help="one model")
    show.add_argument("ref", metavar="REF", help="a model id, NAME, NAME:VERSION or NAME@ALIAS")
    show.set_defaults(handler=handler_for("show_model"))
