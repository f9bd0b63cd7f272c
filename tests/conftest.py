"""Shared pytest fixtures, and the kind marker of every test.

Tests live by kind, and the folder alone gives a test its marker (never a decorator):
- tests/unit: in process only (a loopback server the test starts itself is fine when it runs
  well under a second); `make test-unit` runs these.
- tests/integration: real processes or long-lived servers on this machine, no root.
- tests/cluster: root and system packages (virtual Slurm cluster, Ray, Prometheus, real
  inference servers).
So `-m unit`, `-m "not cluster"` and friends select by kind. Test files in these folders are
imported by their base name (no __init__.py), so a base name must be unique across folders.
Fixtures used by one folder only belong in that folder's conftest.py.
"""
import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
VENV_BIN = Path(sys.executable).parent
KINDS = ("unit", "integration", "cluster")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            folder = Path(item.path).resolve().relative_to(TESTS).parts[0]
        except ValueError:
            continue  # a test outside tests/ (e.g. a path given on the command line)
        if folder not in KINDS:
            raise pytest.UsageError(
                f"{item.nodeid}: tests live in tests/unit, tests/integration or tests/cluster "
                "(tests/conftest.py), so that each one gets its kind's marker")
        item.add_marker(folder)


@pytest.fixture
def repo() -> Path:
    """The repository root (recipes/examples, run.sbatch, ...)."""
    return REPO


@pytest.fixture
def cli_env() -> dict:
    """Environment for running installed console scripts (hpcbench, hpcbench-executor, ...)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
