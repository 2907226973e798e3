"""examples/ run as a person runs them, as subprocesses against a live stack (the embedded
backend, as `make run` starts it; test_auth_stack runs two with AUTH=required): each exits 0 and
prints what it checked; what goes wrong is one line on stderr and exit code 1."""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import free_port
from tests.integration.conftest import ON_EMBEDDED

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MIN_DIGITS_ACCURACY = 0.85

# The examples run @ON_EMBEDDED, what `make run` starts: they exercise the HTTP API, which both
# backends serve alike.


def run_example(name: str, base_url: str, api_key: str | None = None, cwd=None):
    """Run examples/``name`` (Python or bash) with BACKPROP_URL and BACKPROP_API_KEY set."""
    env = {**os.environ, "BACKPROP_URL": base_url}
    env.pop("BACKPROP_API_KEY", None)
    if api_key:
        env["BACKPROP_API_KEY"] = api_key
    program = "bash" if name.endswith(".sh") else sys.executable
    return subprocess.run(
        [program, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def succeeded(name: str, base_url: str, **kwargs) -> str:
    """The example's output, once it has exited 0."""
    done = run_example(name, base_url, **kwargs)
    assert done.returncode == 0, f"{name} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@ON_EMBEDDED
def test_xor_follows_its_job_and_predicts_by_name(stack, tmp_path):
    out = succeeded("xor.py", stack.base_url, cwd=tmp_path)
    assert "  epoch 300: train loss " in out
    assert re.search(r"model xor:\d+ predicts \[0, 1, 1, 0\]", out), out
    assert out.endswith("ok: XOR learned\n")


@ON_EMBEDDED
def test_the_worked_example_reproduces_the_published_figures(stack):
    out = succeeded("worked_example.py", stack.base_url)
    assert "total error 0.298371109 (published 0.298371109)" in out
    assert "w1 = 0.149780716" in out and "w5 = 0.358916480" in out
    assert "w8 = 0.561370121" in out
    assert "ok: the total error and w1..w8 match the published figures within 1e-08" in out


@ON_EMBEDDED
def test_digits_with_hidden_layers_of_6_and_4_are_scored_on_held_out_rows(stack):
    out = succeeded("digits.py", stack.base_url)
    assert "digits, 1797 rows x 64" in out
    accuracy = re.search(r"accuracy on the 25% held-out rows: ([\d.]+)%", out)
    assert accuracy, out
    assert float(accuracy.group(1)) / 100 >= MIN_DIGITS_ACCURACY


@ON_EMBEDDED
def test_iris_is_uploaded_as_csv_and_predicts_species(stack, tmp_path):
    out = succeeded("iris.py", stack.base_url, cwd=tmp_path)
    assert "iris.csv, 150 rows, ['setosa', 'versicolor', 'virginica']" in out
    predicted = re.findall(r"^ +(\w+) predicted (\w+)$", out, re.MULTILINE)
    assert [species for species, _ in predicted] == ["setosa", "versicolor", "virginica"]
    assert out.endswith("ok\n")


@ON_EMBEDDED
def test_the_curl_tour_runs_to_the_end(stack, tmp_path):
    out = succeeded("curl.sh", stack.base_url, cwd=tmp_path)
    assert "epoch events" in out and ": 300 epoch events" in out
    assert re.search(r"POST /v1/models/\d+/predict: \[0, 1, 1, 0\]", out), out
    assert "W and b of 2x4 tanh, 4x2 softmax" in out
    assert re.search(r"data set \d+, 150 rows, classes \[\"setosa\"", out), out
    assert out.endswith("ok\n")


@pytest.mark.parametrize("name", ["xor.py", "curl.sh"])
def test_a_service_that_cannot_be_reached_is_one_line_and_exit_1(name):
    url = f"http://127.0.0.1:{free_port()}"
    done = run_example(name, url)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"error: cannot reach {url}: start the service with 'make run' (or set BACKPROP_URL)"
    )


@ON_EMBEDDED
def test_a_figure_off_by_more_than_the_tolerance_exits_1_naming_it(stack, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("BACKPROP_URL", stack.base_url)
    monkeypatch.delenv("BACKPROP_API_KEY", raising=False)
    worked_example = importlib.import_module("worked_example")
    monkeypatch.setitem(worked_example.UPDATED, "w5", (1, 0, 0, 0.35891658))  # 1e-7 off
    with pytest.raises(SystemExit) as exited:
        worked_example.run(worked_example.main)
    assert exited.value.code == (
        "error: off by more than 1e-08: w5 = 0.358916480, published 0.35891658"
    )
