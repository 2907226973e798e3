"""The architecture, checked by walking imports with ast.

The API (every module of ``service``, the ``backprop`` command line included, but the demo) never
reaches the training code; ``service.db`` imports no Flask, so the worker can use it.
"""

import ast
import importlib.util
from pathlib import Path

import service

ROOT = Path(service.__file__).resolve().parent.parent
# The in-process demo trains on purpose (`backprop demo`, no servers).
ENTRY_POINTS = {"service.demo"}
TRAINING_CODE = {"worker.training", "worker.tasks"}


def module_imports(name: str) -> set[str]:
    """Absolute names of the modules ``name`` imports (``from a import b`` gives a and a.b)."""
    path = Path(importlib.util.find_spec(name).origin)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_our_module(name: str) -> bool:
    """True for a module (not a class or function) of this repository."""
    if name.split(".")[0] not in {"service", "worker", "model_core"}:
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def reachable(start: str) -> set[str]:
    """Every module of ours that importing ``start`` imports, transitively."""
    seen, stack = set(), [start]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(child for child in module_imports(name) if is_our_module(child))
    return seen


def api_modules() -> list[str]:
    names = []
    for path in sorted((ROOT / "service").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name not in ENTRY_POINTS and not name.startswith("service.samples"):
            names.append(name)
    return names


def test_the_api_never_imports_the_training_code():
    modules = api_modules()
    assert {"service.resources.jobs", "service.queue", "service.cli"} <= set(modules)
    for name in modules:
        assert not reachable(name) & TRAINING_CODE, f"{name} reaches the training code"


def test_the_check_would_see_a_leak():
    assert "worker.training" in reachable("worker.tasks")


def test_the_storage_layer_imports_no_flask():
    for name in ("service.db.models", "service.db.session", "service.db.queries"):
        for module in reachable(name):
            assert not any(imported.startswith("flask") for imported in module_imports(module))
