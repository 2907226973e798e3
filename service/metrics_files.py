"""The folder where the API's worker processes keep their request figures.

prometheus_client picks its multiprocess mode from ``PROMETHEUS_MULTIPROC_DIR`` when it is first
imported, so ``backprop api`` calls ``prepare_metrics_files`` before importing anything that
imports it (this module imports no prometheus_client); the worker processes Granian forks
inherit the variable. Files left by an earlier run are removed, since their counts would be
added in; the API removes its own when it stops.
"""

import os
from pathlib import Path

from service.settings import Settings

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_files(settings: Settings) -> Path | None:
    """Empty the metrics folder and point prometheus_client at it; None (and nothing done) when
    ``METRICS=off``."""
    if settings.metrics == "off":
        return None
    directory = settings.metrics_directory().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    remove_metrics_files(directory)
    os.environ[VARIABLE] = str(directory)
    return directory


def remove_metrics_files(directory: Path) -> None:
    """Remove prometheus_client's files (``*.db``) from ``directory``, and nothing else."""
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def remove_metrics_folder() -> None:
    """When the API stops: its figures go, and the folder too when nothing else is in it."""
    folder = os.environ.get(VARIABLE)
    if folder is None:
        return
    directory = Path(folder)
    remove_metrics_files(directory)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
