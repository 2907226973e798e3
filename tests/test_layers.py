"""The layers, checked where they matter: in a fresh interpreter per entry point.

Each entry point runs in a subprocess that writes ``sys.modules`` when it exits, so what a parent
package's ``__init__`` drags in is seen too (walking ``import`` statements alone misses it). The
arrows allowed are drawn in README.md (Layout).
"""

import json
import os
import subprocess
import sys
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

# entry point: (the code that starts it, top-level packages it must not load)
ENTRY_POINTS = {
    "model_core": (
        "; ".join(f"import {name}" for name in MODEL_CORE_MODULES),
        {"sqlalchemy", "flask", "celery", "service", "worker"},
    ),
    "worker tasks": ("import worker.tasks", HTTP),
    "backprop worker": ("import service.commands.cli, worker.main", HTTP),
    "backprop dispatcher": ("import service.commands.cli, service.dispatcher", HTTP),
    "storage and broker": ("import service.db.records, service.db.attempts, service.broker", HTTP),
    "backprop api": (
        f"import service.commands.cli, service.api.server; from service.api.app import create_app; "
        f"{EMBEDDED_SETTINGS}; create_app(settings)",
        {"worker"},
    ),
    "backprop db upgrade": (
        "from service.commands.cli import main; raise SystemExit(main(['db', 'upgrade']))",
        HTTP,
    ),
}


def modules_loaded(code: str, cwd: Path) -> set[str]:
    """Top-level package names in ``sys.modules`` when a fresh interpreter running ``code`` in
    ``cwd`` (with ``DATABASE_URL`` on a SQLite file there) exits."""
    record = cwd / "modules.json"
    write_modules = f"open({str(record)!r}, 'w').write(json.dumps(list(sys.modules)))"
    program = f"import atexit, json, sys\natexit.register(lambda: {write_modules})\n{code}\n"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{cwd / 'migrated.sqlite'}",
    }
    subprocess.run([sys.executable, "-c", program], cwd=cwd, env=env, check=True, timeout=120)
    return {name.split(".")[0] for name in json.loads(record.read_text())}


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_an_entry_point_loads_only_the_layers_below_it(entry_point, tmp_path):
    code, forbidden = ENTRY_POINTS[entry_point]
    loaded = modules_loaded(code, tmp_path)
    assert not loaded & forbidden, f"{entry_point} loads {sorted(loaded & forbidden)}"


def test_the_migration_entry_point_really_migrated(tmp_path):
    modules_loaded(ENTRY_POINTS["backprop db upgrade"][0], tmp_path)
    assert (tmp_path / "migrated.sqlite").stat().st_size > 0


def test_the_probe_sees_what_an_entry_point_loads(tmp_path):
    """The check can fail: the API's factory does load Flask, and the worker our training code."""
    assert {"flask", "service"} <= modules_loaded("import service.api.app", tmp_path)
    assert "model_core" in modules_loaded("import worker.tasks", tmp_path)
