"""The curl examples of README.md and docs/api.md are tested: each states its status
(``# -> 201``), and each document's examples run in order against a stack of their own, on an
empty database and a free port, from a folder where ``examples/`` is what the repository ships.
A doc example that breaks fails the suite.
"""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import run_stack

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/api.md")
SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
STATED_STATUS = re.compile(r"#\s*->\s*(\d{3})\b")
DOC_ADDRESS = "localhost:8000"
STATUS_MARK = "\n__status__"


@dataclass(frozen=True)
class Example:
    """One curl command of a document, the line it starts on, and the status it states."""

    document: str
    line: int
    command: str
    status: int | None

    def __str__(self) -> str:
        return f"{self.document}:{self.line}: {self.command}"


def shell_commands(block: str) -> list[tuple[int, str]]:
    """``(line offset, command)`` of a shell block: a command goes on over lines ending in a
    backslash or inside an open single quote."""
    commands, pending, start = [], "", 0
    for offset, line in enumerate(block.splitlines()):
        if not pending:
            start = offset
        pending += line + "\n"
        if not (line.endswith("\\") or pending.count("'") % 2):
            commands.append((start, pending.strip()))
            pending = ""
    return commands


def examples(document: str) -> list[Example]:
    text = (ROOT / document).read_text()
    found = []
    for block in SHELL_BLOCK.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        for offset, command in shell_commands(block.group(1)):
            if command.startswith("curl "):
                stated = STATED_STATUS.search(command.splitlines()[-1])
                status = int(stated.group(1)) if stated else None
                found.append(Example(document, first_line + offset, command, status))
    return found


def run(example: Example, address: str, cwd: Path) -> tuple[int, str]:
    """Run the example against ``address`` in ``cwd``; its HTTP status and its output."""
    command = example.command.replace(DOC_ADDRESS, address)
    command = "curl -w '" + STATUS_MARK.replace("\n", "\\n") + "%{http_code}' " + command[5:]
    result = subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=180
    )
    output, _, status = result.stdout.rpartition(STATUS_MARK)
    return int(status or 0), output + result.stderr


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_curl_example_states_its_status(document):
    found = examples(document)
    assert len(found) >= 5, f"{document}: the extraction found only {len(found)} examples"
    assert [str(e) for e in found if e.status is None] == []


@pytest.fixture
def fresh_stack(tmp_path):
    """A stack of the embedded default on an empty database of its own."""
    (tmp_path / "var").mkdir()
    yield from run_stack(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'backprop.sqlite'}",
            "BROKER_URL": f"sqla+sqlite:///{tmp_path / 'var' / 'broker.sqlite'}",
        },
        tmp_path,
    )


@pytest.mark.live
@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_curl_examples_run_in_document_order(document, fresh_stack, tmp_path):
    reader = tmp_path / "reader"  # where a reader of the docs stands: examples/ is at hand
    reader.mkdir()
    (reader / "examples").symlink_to(ROOT / "examples")
    address = fresh_stack.base_url.removeprefix("http://")
    broken = []
    for example in examples(document):
        status, output = run(example, address, reader)
        if status != example.status:
            broken.append(f"{example}\n  -> {status}, stated {example.status}\n{output[-600:]}")
    assert not broken, "\n\n".join(broken) + "\n" + fresh_stack.log_tail(15)
