"""The environment a run was measured in: versions, platform, git commit of hpcbench.

Recorded once in <run>/environment.json (the first time a report of the run is built, normally at
the end of `hpcbench run` on the coordinator's machine) and read back afterwards, so a report
rebuilt later, elsewhere or after an upgrade still shows the run's environment and is identical
to the first one.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from hpcbench.common.files import write_atomic

ENVIRONMENT_FILE = "environment.json"
_PACKAGES = ("hpcbench", "numpy", "matplotlib", "pyzmq", "msgpack", "grpcio")


def run_environment(run_dir: Path) -> dict:
    """environment.json of the run, recorded now if the run has none yet."""
    path = Path(run_dir) / ENVIRONMENT_FILE
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass  # damaged: record it again rather than fail the report
    environment = capture_environment()
    write_atomic(path, json.dumps(environment, indent=2, sort_keys=True) + "\n")
    return environment


def capture_environment() -> dict:
    """This process's environment now; `recorded_at` (UTC) tells when, so a report built long
    after its run shows that its environment was taken then."""
    return {
        "recorded_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "git_commit": _git_commit(),
    }


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    """Commit of the hpcbench source tree (an editable install), "+dirty" with local changes;
    "unknown" for an installed wheel or without git."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
