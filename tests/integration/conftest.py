"""Fixtures the process suites share."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.waiting import wait_until


@pytest.fixture
def daemon_process(tmp_path):
    """(process, run dir) of an `hpcbench-coordinator` daemon whose sessions go to
    tmp/results; stopped after the test."""
    run_dir = tmp_path / "daemon"
    process = subprocess.Popen([sys.executable, "-m", "hpcbench.coordinator.control.daemon",
                                "--run-dir", str(run_dir), "--results-dir",
                                str(tmp_path / "results")], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: (run_dir / "coordinator.json").exists() or process.poll() is not None,
                   timeout=30, what="coordinator.json")
        assert process.poll() is None, process.stdout.read()
        yield process, run_dir
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def daemon(daemon_process):
    """The daemon's run dir."""
    return daemon_process[1]
