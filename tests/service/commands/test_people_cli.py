"""What ``backprop train --follow`` prints when the job ends: a summary for a person, not the
job record (which ``--json`` gives); the job body ``backprop train``'s options make."""

import pytest
from rich.console import Console

from service.commands.cli import build_parser
from service.commands.people_cli import UsageError, explanation_table, job_body, job_summary

SUCCEEDED = {
    "id": 12,
    "status": "succeeded",
    "epoch": 300,
    "epochs": 300,
    "train_loss": 0.01234,
    "val_loss": 0.02,
    "train_accuracy": 1.0,
    "val_accuracy": 0.975,
    "error": None,
    "model_id": 7,
    "model_name": "iris",
    "network": {"layers": [{"units": 4, "activation": "tanh"}]},
    "training": {"epochs": 300},
}


def test_a_succeeded_job_ends_with_its_losses_its_model_and_the_next_command():
    assert job_summary(SUCCEEDED).splitlines() == [
        "job 12 succeeded: 300/300 epochs",
        "  loss 0.0123  val_loss 0.0200  acc 1.0000  val_acc 0.9750",
        "  model 7 (iris)",
        "  next: backprop predict 7 < rows.csv",
    ]


def test_without_validation_or_a_name_only_what_there_is_is_shown():
    job = {**SUCCEEDED, "val_loss": None, "val_accuracy": None, "model_name": None}
    assert job_summary(job).splitlines()[1:3] == ["  loss 0.0123  acc 1.0000", "  model 7"]


def test_a_failed_job_shows_its_error_and_no_model():
    job = {
        **SUCCEEDED,
        "status": "failed",
        "epoch": 3,
        "train_loss": None,
        "val_loss": None,
        "train_accuracy": None,
        "val_accuracy": None,
        "error": "the loss became NaN at epoch 3",
        "model_id": None,
    }
    assert job_summary(job).splitlines() == [
        "job 12 failed: 3/300 epochs",
        "  error: the loss became NaN at epoch 3",
    ]


def test_an_explanation_shows_the_largest_attributions_first_with_signed_bars():
    row = {
        "target": 3,
        "f_x": 0.98,
        "f_baseline": 0.1,
        "attributions": {"a": 0.1, "b": -0.4, "c": 0.2, "d": 0.0},
    }
    console = Console(width=80, record=True, color_system="standard")
    console.print(explanation_table(1, row, top=3))
    text = console.export_text(styles=True)
    lines = [line for line in text.splitlines() if line.startswith("│")]
    assert "row 1: target 3, f 0.98 (baseline 0.1)" in text
    assert [line.split()[1] for line in lines] == ["b", "c", "a"]
    assert "-0.4" in lines[0] and "\x1b[31m" + "█" * 20 in lines[0]  # red: negative
    assert "\x1b[32m" + "█" * 10 + "\x1b[0m" in lines[1]  # green, half as long


def test_train_options_for_weights_and_fine_tuning_go_into_the_job_body():
    args = build_parser().parse_args(
        [
            "train",
            "--dataset",
            "3",
            "--init-from",
            "digits@production",
            "--replace-output",
            "--class-weight",
            "0=1, 7=2.5",
            "--epochs",
            "0",
        ]
    )
    assert job_body(args) == {
        "dataset_id": 3,
        "network": {"init_from": "digits@production", "replace_output": True},
        "training": {"epochs": 0, "class_weight": {"0": 1.0, "7": 2.5}},
    }
    balanced = build_parser().parse_args(
        ["train", "--dataset", "3", "--layers", "2:softmax", "--class-weight", "balanced"]
    )
    assert job_body(balanced)["training"] == {"class_weight": "balanced"}


def test_a_class_weight_that_is_not_label_equals_weight_is_a_usage_error():
    args = build_parser().parse_args(
        ["train", "--dataset", "3", "--layers", "2:softmax", "--class-weight", "0=1,7"]
    )
    with pytest.raises(UsageError, match=r"--class-weight\[1\]: '7' is not LABEL=WEIGHT"):
        job_body(args)


def test_a_job_needs_layers_or_a_model_to_start_from():
    args = build_parser().parse_args(["train", "--dataset", "3"])
    with pytest.raises(UsageError, match="--layers or --init-from: required"):
        job_body(args)


def train_body(*arguments: str) -> dict:
    return job_body(build_parser().parse_args(["train", *arguments]))


def test_dropout_goes_on_every_hidden_layer():
    body = train_body(
        "--dataset", "1", "--layers", "64:relu,32:tanh,10:softmax", "--dropout", "0.2"
    )
    assert [layer.get("dropout") for layer in body["network"]["layers"]] == [0.2, 0.2, None]


def test_dropout_without_hidden_layers_is_a_usage_error():
    with pytest.raises(UsageError, match="--dropout: needs hidden layers"):
        train_body("--dataset", "1", "--layers", "2:softmax", "--dropout", "0.2")
