"""Fixtures of the cluster tests only."""
from __future__ import annotations

import shutil
import tempfile

import pytest


@pytest.fixture
def ray_temp_root():
    """Ray's per-node temp dirs (logs, sockets) under a short path removed afterwards; short,
    because Ray's socket paths must stay under the 107-byte limit of Unix sockets."""
    root = tempfile.mkdtemp(prefix="hbr", dir="/tmp")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
