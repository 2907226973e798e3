"""The layers, checked twice: per folder, on every ``import`` statement of our code (lazy ones
included), and where they matter, in a fresh interpreter per entry point.

Each entry point runs in a subprocess that writes ``sys.modules`` when it exits, so what a parent
package's ``__init__`` drags in is seen too (walking ``import`` statements alone misses it). The
rule of each folder is one line of README.md (Layout).
"""

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import model_core

ROOT = Path(__file__).resolve().parent.parent
OURS = {"service", "worker", "model_core"}
HTTP = {"flask", "flask_smorest", "werkzeug", "webargs", "apispec"}
MODEL_CORE_MODULES = sorted(
    f"model_core.{path.stem}"
    for path in Path(model_core.__file__).parent.glob("*.py")
    if path.stem != "__init__"
)
EMBEDDED_SETTINGS = (
    "from service.settings import Settings; "
    "settings = Settings(database_url='sqlite:///db.sqlite', broker_url='sqla+sqlite:///b.sqlite')"
)

NOT_HTTP = HTTP | {"service.api"}

# entry point: (the code that starts it, packages and modules it must not load)
ENTRY_POINTS = {
    "model_core": (
        "; ".join(f"import {name}" for name in MODEL_CORE_MODULES),
        {"sqlalchemy", "flask", "celery", "service", "worker"},
    ),
    "worker tasks": ("import worker.tasks", NOT_HTTP | {"service.commands"}),
    "backprop worker": ("import service.commands.cli, worker.main", NOT_HTTP),
    "backprop dispatcher": ("import service.commands.cli, service.dispatcher", NOT_HTTP),
    "storage and broker": (
        "import service.db.records, service.db.attempts, service.broker",
        NOT_HTTP | {"service.datasets", "service.jobs", "service.sweeps", "service.serving"},
    ),
    "backprop api": (
        "import service.commands.cli, service.api.server; "
        f"from service.api.app import create_app; {EMBEDDED_SETTINGS}; create_app(settings)",
        {"worker"},
    ),
    "backprop db upgrade": (
        "from service.commands.cli import main; raise SystemExit(main(['db', 'upgrade']))",
        NOT_HTTP,
    ),
    "the shared words": ("import service.vocabulary, service.model_refs", {"sqlalchemy", "flask"}),
}

# The layers, lowest first. A module imports from its own group and from the layers before its
# own, never from a later layer nor from another group of its layer (the worker and the API stand
# side by side, and neither imports the other). A group is a module or a folder.
LAYERS = (
    ("model_core", "service.vocabulary", "service.ids"),
    ("service.settings",),
    (
        "service.logs",
        "service.metrics_files",
        "service.generation",
        "service.model_refs",
        "service.signatures",
        "service.caching",
        "service.json_depth",
        "service.specs_json",
        "service.secret_key",
        "service.memory",
    ),
    ("service.db",),
    ("service.broker", "service.embedded_broker", "service.quotas"),
    ("service.datasets",),
    ("service.jobs", "service.serving", "service.webhooks"),
    ("service.sweeps", "service.dispatcher"),
    ("worker", "service.api"),
    ("service.commands",),
)
RANK = {group: rank for rank, layer in enumerate(LAYERS) for group in layer}
# Reached from service.commands only inside the function that runs the command.
LAZY_ONLY = {"service.api", "worker"}


def every_module_loaded(code: str, cwd: Path) -> set[str]:
    """The names in ``sys.modules`` when a fresh interpreter running ``code`` in ``cwd`` (with
    ``DATABASE_URL`` on a SQLite file there) exits."""
    record = cwd / "modules.json"
    write_modules = f"open({str(record)!r}, 'w').write(json.dumps(list(sys.modules)))"
    program = f"import atexit, json, sys\natexit.register(lambda: {write_modules})\n{code}\n"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{cwd / 'migrated.sqlite'}",
    }
    subprocess.run([sys.executable, "-c", program], cwd=cwd, env=env, check=True, timeout=120)
    return set(json.loads(record.read_text()))


def modules_loaded(code: str, cwd: Path) -> set[str]:
    """The top-level packages of :func:`every_module_loaded`."""
    return top_level(every_module_loaded(code, cwd))


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def under(name: str, packages: set[str]) -> set[str]:
    """Those of ``packages`` (dotted) that module ``name`` is or lies in."""
    return {package for package in packages if name == package or name.startswith(package + ".")}


@dataclass(frozen=True)
class Probe:
    """What an entry point loaded (every name in ``sys.modules``), and the folder it ran in."""

    modules: set[str]
    folder: Path


@pytest.fixture(scope="session")
def probe(tmp_path_factory) -> Callable[[str], Probe]:
    """A function: the probe of ``ENTRY_POINTS[name]``, run once per session (a fresh
    interpreter costs up to a second and a half, and three tests read the same ones)."""
    probes: dict[str, Probe] = {}

    def run(name: str) -> Probe:
        if name not in probes:
            folder = tmp_path_factory.mktemp("entry-point")
            probes[name] = Probe(every_module_loaded(ENTRY_POINTS[name][0], folder), folder)
        return probes[name]

    return run


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_an_entry_point_loads_only_the_layers_below_it(entry_point, probe):
    forbidden = ENTRY_POINTS[entry_point][1]
    loaded = probe(entry_point).modules
    found = sorted({package for name in loaded for package in under(name, forbidden)})
    assert not found, f"{entry_point} loads {found}"


def our_modules() -> list[tuple[str, Path]]:
    """(dotted name, path) of every module of service/, worker/ and model_core/."""
    found = []
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(module imported, whether at the top level of the file) for every absolute import."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top))
    return found


def group_of(module: str) -> str | None:
    """The group of LAYERS that ``module`` belongs to (the longest that matches), or None."""
    matches = [group for group in RANK if under(module, {group})]
    return max(matches, key=len, default=None)


def layer_violations(module: str, imported: str, at_top: bool) -> list[str]:
    """What is wrong with ``module`` importing ``imported`` (at the top of its file or not)."""
    own, theirs = group_of(module), group_of(imported)
    if own is None or theirs is None or own == theirs:
        return []
    if own == "service.commands" and theirs in LAZY_ONLY:
        return [f"{module} imports {imported} at import time"] if at_top else []
    if RANK[theirs] >= RANK[own]:
        return [f"{module} ({own}) imports {imported} ({theirs})"]
    return []


def test_every_import_goes_down_the_layers():
    wrong = [
        problem
        for module, path in our_modules()
        for imported, at_top in imports_of(path)
        for problem in layer_violations(module, imported, at_top)
    ]
    assert not wrong, "\n".join(wrong)


def test_only_the_api_imports_flask():
    wrong = [
        f"{module} imports {imported}"
        for module, path in our_modules()
        if not under(module, {"service.api"})
        for imported, _ in imports_of(path)
        if imported.split(".")[0] in HTTP
    ]
    assert not wrong, "\n".join(wrong)


def test_model_core_and_the_shared_words_import_nothing_of_ours():
    wrong = [
        f"{module} imports {imported}"
        for module, path in our_modules()
        if under(module, {"model_core", "service.vocabulary"})
        for imported, _ in imports_of(path)
        if imported.split(".")[0] not in sys.stdlib_module_names | {"numpy", "model_core"}
        or (module == "service.vocabulary" and imported.split(".")[0] in OURS)
    ]
    assert not wrong, "\n".join(wrong)


def test_every_module_has_its_layer():
    """A new folder or module of service/ must be placed in LAYERS (and README's Layout)."""
    placeless = [
        module for module, _ in our_modules() if module != "service" and group_of(module) is None
    ]
    assert not placeless, placeless


def test_the_rule_can_fail():
    """Each kind of wrong import is caught: upward, sideways within a layer, and eager."""
    assert layer_violations("service.db.records", "service.api.app", True)
    assert layer_violations("worker.training", "service.api.registry", False)
    assert layer_violations("service.api.app", "worker.tasks", False)
    assert layer_violations("service.commands.cli", "service.api.server", True)
    assert not layer_violations("service.commands.cli", "service.api.server", False)
    assert not layer_violations("service.api.app", "service.db.records", True)


def test_the_migration_entry_point_really_migrated(probe):
    assert (probe("backprop db upgrade").folder / "migrated.sqlite").stat().st_size > 0


def test_the_probe_sees_what_an_entry_point_loads(probe):
    """The check can fail: the API's factory does load Flask, and the worker our training code."""
    assert {"flask", "service"} <= top_level(probe("backprop api").modules)
    assert "model_core" in top_level(probe("worker tasks").modules)
