"""What an API process imports when its app is built: not matplotlib (the loss charts), SciPy
(the drift checks) or pyarrow (CSV and Parquet files), which are imported by the first request
that needs them. Every module imported at start-up and its objects are held for the process's
life and walked by every full collection of the garbage collector."""

import json
import os
import subprocess
import sys

# Checked in a new interpreter: this process's sys.modules holds whatever other tests imported.
CHILD = """
import json, sys
from service.api.app import create_app
from service.settings import Settings
app = create_app(Settings.from_env())
heavy = ("matplotlib", "scipy", "pyarrow")
print(json.dumps({"routes": len(app.url_map._rules), "imported": [
    name for name in sys.modules if name.split(".")[0] in heavy]}))
"""


def test_building_the_app_imports_no_matplotlib_scipy_or_pyarrow(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'backprop.sqlite'}"}
    found = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    built = json.loads(found.stdout.strip().splitlines()[-1])
    assert built["routes"] > 50
    assert built["imported"] == []
