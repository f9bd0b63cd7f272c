"""Run a LaunchSpec as a local process: a server the tests start outside a session.

The server gets its own process group (`common.process_group`), so stopping it also stops
what it started; output goes to a log file, which is what error messages point at.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.process_group import spawn, stop_group
from hpcbench.servers.plugin import LaunchSpec


def start_server(spec: LaunchSpec, log_path: Path) -> subprocess.Popen:
    """Start `spec` with its env added to ours; stdout and stderr go to `log_path`."""
    try:
        return spawn(spec.argv, spec.env, log_path)
    except OSError as error:
        raise HpcbenchError("E001", f"cannot start {spec.argv[0]!r}: {error.strerror}",
                            (f"command: {' '.join(spec.argv)}",
                             "fix: install the server program or set its path in "
                             "servers.service_config")) from error


def stop_server(process: subprocess.Popen, grace_s: float = 15.0) -> int:
    """SIGTERM the server's process group, SIGKILL it after `grace_s`; return the exit code."""
    return stop_group(process, grace_s)
