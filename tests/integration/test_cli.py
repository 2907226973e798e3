"""The commands for people (`backprop datasets|train|jobs|sweep|models|predict|plot`) against a live
stack, as a person runs them: subprocesses, the progress bar drawn into a pseudo-terminal."""

import json
import os
import select
import signal
import subprocess
import time

import pytest

from tests.factories import XOR_NETWORK, free_port
from tests.integration.conftest import BACKPROP, ON_EMBEDDED
from tests.test_layers import modules_loaded

XOR_CSV = "x1,x2,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n"
XOR_ROWS = "x1,x2\n0,0\n0,1\n1,0\n1,1\n"
FAST_TRAINING = {"training": {"seed": 3, "optimizer": {"name": "adam", "learning_rate": 0.05}}}


def backprop(base_url: str, *args: str, stdin: str | None = None, cwd=None):
    env = {**os.environ, "BACKPROP_URL": base_url}
    env.pop("BACKPROP_API_KEY", None)
    return subprocess.run(
        [BACKPROP, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def backprop_json(base_url: str, *args: str, **kwargs):
    result = backprop(base_url, *args, "--json", **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def in_terminal(base_url: str, *args: str, interrupt_when: bytes | None = None, answer=b""):
    """Run ``backprop args`` in a pseudo-terminal: (exit code, everything it wrote). With
    ``interrupt_when``: a SIGINT once that text appears, then ``answer`` to the question."""
    controller, terminal = os.openpty()
    env = {**os.environ, "BACKPROP_URL": base_url, "TERM": "xterm", "COLUMNS": "120"}
    process = subprocess.Popen(
        [BACKPROP, *args], stdin=terminal, stdout=terminal, stderr=terminal, env=env
    )
    os.close(terminal)
    written = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([controller], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            written += chunk
            if interrupt_when is not None and interrupt_when in written:
                process.send_signal(signal.SIGINT)
                interrupt_when = None
            if answer and b"[y/N]" in written:
                os.write(controller, answer + b"\n")
                answer = b""
        return process.wait(timeout=30), written.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)


@pytest.fixture
def xor_dataset(stack, tmp_path) -> int:
    (tmp_path / "xor.csv").write_text(XOR_CSV)
    dataset = backprop_json(
        stack.base_url,
        "datasets",
        "upload",
        str(tmp_path / "xor.csv"),
        "--target",
        "y",
        "--task",
        "classification",
    )
    assert (dataset["rows"], dataset["features"], dataset["classes"]) == (4, 2, [0, 1])
    return dataset["id"]


def test_an_upload_that_names_no_task_takes_it_from_the_target(stack, tmp_path):
    """The README's one-liner, without --task; the answer says the task was inferred, and
    --task still chooses."""
    (tmp_path / "xor.csv").write_text(XOR_CSV)
    upload = ("datasets", "upload", str(tmp_path / "xor.csv"), "--target", "y")
    dataset = backprop_json(stack.base_url, *upload)
    assert (dataset["task"], dataset["task_inferred"]) == ("classification", True)
    assert dataset["classes"] == [0, 1]
    people_table = backprop(stack.base_url, *upload, "--task", "regression")
    assert people_table.returncode == 0, people_table.stderr
    assert [line.split()[1:4] for line in people_table.stdout.splitlines() if "task" in line] == [
        ["task", "│", "regression"],
        ["task_inferred", "│", "False"],
    ]


def test_a_person_trains_on_a_csv_and_predicts_from_the_command_line(stack, xor_dataset, tmp_path):
    url = stack.base_url
    assert xor_dataset in [row["id"] for row in backprop_json(url, "datasets", "list")]
    (tmp_path / "job.json").write_text(json.dumps(FAST_TRAINING))
    job = backprop_json(
        url,
        "train",
        "--dataset",
        str(xor_dataset),
        "--layers",
        "8:tanh,2:softmax",
        "--epochs",
        "300",
        "--spec",
        str(tmp_path / "job.json"),
        "--follow",
    )
    assert (job["status"], job["epoch"], job["training"]["optimizer"]["name"]) == (
        "succeeded",
        300,
        "adam",
    )
    assert job["id"] in [row["id"] for row in backprop_json(url, "jobs", "list")]
    people_table = backprop(url, "jobs", "list")
    assert "Jobs" in people_table.stdout and "succeeded" in people_table.stdout

    model = backprop_json(url, "models", "show", str(job["model_id"]))
    assert (model["job_id"], model["n_features"]) == (job["id"], 2)
    lines = backprop(url, "predict", str(model["id"]), stdin=XOR_ROWS).stdout.splitlines()
    assert len(lines) == 4 and set(lines) <= {"0", "1"}
    headless = backprop_json(url, "predict", str(model["id"]), stdin=XOR_ROWS.split("\n", 1)[1])
    assert len(headless["predictions"]) == 4
    explained = backprop_json(url, "explain", str(model["id"]), "--steps", "16", stdin=XOR_ROWS)
    assert (explained["steps"], len(explained["explanations"])) == (16, 4)
    table = backprop(url, "explain", str(model["id"]), "--target", "1", stdin=XOR_ROWS).stdout
    assert "row 4: target 1" in table and "x2" in table  # the CSV named its features

    plotted = backprop(url, "plot", str(job["id"]), "-o", str(tmp_path / "loss.png"), "--log")
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@ON_EMBEDDED
def test_weights_and_fine_tuning_from_the_command_line(stack, tmp_path):
    """--weight on an upload, --class-weight and --name on a job, then --init-from NAME with 0
    epochs: the child predicts as its parent and names it (the CLI is the same on any backend)."""
    url = stack.base_url
    weighted = "x1,x2,w,y\n0,0,1,0\n0,1,2,1\n1,0,2,1\n1,1,1,0\n"
    (tmp_path / "weighted.csv").write_text(weighted)
    dataset = backprop_json(
        url, "datasets", "upload", str(tmp_path / "weighted.csv"), "--target", "y", "--weight", "w"
    )
    assert (dataset["weighted"], dataset["features"]) == (True, 2)
    common = ("train", "--dataset", str(dataset["id"]), "--follow")
    parent = backprop_json(
        url,
        *common,
        "--layers",
        "8:tanh,2:softmax",
        "--epochs",
        "50",
        "--class-weight",
        "balanced",
        "--name",
        "xor-weighted",
    )
    assert (parent["status"], parent["training"]["class_weight"]) == ("succeeded", "balanced")
    child = backprop_json(url, *common, "--init-from", "xor-weighted", "--epochs", "0")
    assert child["status"] == "succeeded", child["error"]
    assert child["network"]["init_from"] == parent["model_id"]
    model = backprop_json(url, "models", "show", str(child["model_id"]))
    assert model["lineage"][0]["name"] == "xor-weighted"
    rows = XOR_ROWS.split("\n", 1)[1]
    answer = backprop_json(url, "predict", str(child["model_id"]), stdin=rows)
    instances = [[float(cell) for cell in line.split(",")] for line in rows.split()]
    expected = stack.post("/v1/models/xor-weighted/predict", json={"instances": instances})
    assert answer["probabilities"] == expected.json()["probabilities"]


def test_following_a_job_draws_a_progress_bar_in_a_terminal(stack, xor_dataset):
    code, written = in_terminal(
        stack.base_url, "train", "--dataset", str(xor_dataset), "--layers", "4:tanh,2:softmax",
        "--epochs", "40", "--follow",
    )  # fmt: skip
    assert code == 0, written
    assert "epoch" in written and "40/40" in written and "loss" in written
    assert "\x1b[" in written  # drawn live (escape codes), not printed as plain lines
    summary = written[written.index("succeeded: 40/40 epochs") :]  # then a summary, not the record
    model_id = int(summary.split("  model ")[1].split()[0])
    assert f"next: backprop predict {model_id} < rows.csv" in summary
    assert '"layers"' not in written


def test_a_sweep_followed_in_a_terminal_ends_with_its_leaderboard(stack, xor_dataset, tmp_path):
    rates = {"training.optimizer.learning_rate": [0.01, 0.1]}
    spec = {
        "network": XOR_NETWORK,
        "training": {"epochs": 30, "optimizer": {"name": "adam"}},
        "search": {"method": "grid", "parameters": rates},
        "metric": "train_loss",
    }
    (tmp_path / "sweep.json").write_text(json.dumps(spec))
    code, written = in_terminal(
        stack.base_url, "sweep", "create", "--spec", str(tmp_path / "sweep.json"),
        "--dataset", str(xor_dataset), "--follow",
    )  # fmt: skip
    assert code == 0, written
    assert "2/2" in written and "best train_loss" in written and "\x1b[" in written
    assert "Leaderboard (train_loss, best first)" in written
    sweep = max(backprop_json(stack.base_url, "sweep", "list"), key=lambda row: row["id"])
    shown = backprop_json(stack.base_url, "sweep", "show", str(sweep["id"]))
    assert shown["status"] == "succeeded"
    assert sorted(
        entry["params"]["training.optimizer.learning_rate"] for entry in shown["leaderboard"]
    ) == [0.01, 0.1]


def test_ctrl_c_while_following_asks_and_y_cancels_the_job(stack, xor_dataset):
    code, written = in_terminal(
        stack.base_url, "train", "--dataset", str(xor_dataset), "--layers", "4:tanh,2:softmax",
        "--epochs", "1000000", "--follow",
        interrupt_when=b"running", answer=b"y",
    )  # fmt: skip
    assert code == 130, written
    assert "[y/N]" in written and "cancel requested" in written
    job_id = int(written.split("cancel job ")[1].split("?")[0])
    assert stack.wait_for_job(job_id)["status"] == "cancelled"


def test_an_invalid_layer_is_one_line_naming_the_field(stack, xor_dataset):
    result = backprop(
        stack.base_url, "train", "--dataset", str(xor_dataset), "--layers", "4:sigmod,2:softmax"
    )
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "network.layers[0].activation" in result.stderr and "sigmod" in result.stderr
    malformed = backprop(stack.base_url, "train", "--dataset", "1", "--layers", "4tanh")
    assert malformed.returncode == 1 and "--layers[0]" in malformed.stderr


def test_an_unreachable_service_is_one_line_naming_its_url():
    url = f"http://127.0.0.1:{free_port()}"
    result = backprop(url, "jobs", "list")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and url in result.stderr


def test_the_commands_for_people_load_no_server_layer_and_the_server_not_them(tmp_path):
    assert not modules_loaded("import service.commands.people_cli", tmp_path) & {
        "flask",
        "sqlalchemy",
        "celery",
        "worker",
    }
    # Nor does `backprop` itself until a command needs them: each call of a command for people is
    # a process of its own (the keys' database actions are imported when one runs).
    assert not modules_loaded("import service.commands.cli", tmp_path) & {
        "backprop_client",
        "rich",
        "sqlalchemy",
        "flask",
        "celery",
    }
