"""model_core is maths only: it imports numpy and the standard library, nothing else."""

import ast
import sys
from pathlib import Path

import model_core

PACKAGE = Path(model_core.__file__).parent
ALLOWED = {"numpy", "model_core"} | set(sys.stdlib_module_names)
NO_IO = {"os", "io.open", "logging", "pathlib", "socket", "subprocess", "shutil"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_model_core_imports_only_numpy_and_the_standard_library():
    sources = sorted(PACKAGE.glob("*.py"))
    assert len(sources) > 5
    for path in sources:
        for name in imported_modules(path):
            root = name.split(".")[0]
            assert root in ALLOWED, f"{path.name} imports {name}"
            assert name not in NO_IO, f"{path.name} imports {name}: model_core does no I/O"
