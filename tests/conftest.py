"""Shared pytest fixtures. Suite-specific fixtures live beside their suites in tests/."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


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
