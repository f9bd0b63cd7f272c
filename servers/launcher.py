"""Run a LaunchSpec as a local process (runtime `process`, or one node's step under srun).

The server gets its own process group, so stopping it also stops what it started (Ray's
raylets, vLLM's engine core, llama.cpp's workers); output goes to a log file in the run
directory, which is what error messages point at.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from hpcbench.coordinator.errors import HpcbenchError
from hpcbench.servers.plugin import LaunchSpec


def start_server(spec: LaunchSpec, log_path: Path) -> subprocess.Popen:
    """Start `spec` with its env added to ours; stdout and stderr go to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(spec.argv, env={**os.environ, **spec.env}, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as error:
            raise HpcbenchError("E001", f"cannot start {spec.argv[0]!r}: {error.strerror}",
                                (f"command: {' '.join(spec.argv)}",
                                 "fix: install the server program or set its path in "
                                 "servers.service_config")) from error


def stop_server(process: subprocess.Popen, grace_s: float = 15.0) -> int:
    """SIGTERM the server's process group, SIGKILL it after `grace_s`; return the exit code."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    _signal_group(process, signal.SIGKILL)  # children that outlived their parent
    return process.returncode


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
