"""Start and stop a program in its own process group, its output in a log file.

The one place where hpcbench spawns and stops processes (the session's children in
`local_runtime`, servers started directly by `servers.launcher`): a process group lets a stop
reach everything the program started (Ray's raylets, vLLM's engine core, srun's tasks).
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def spawn(argv: list[str], env: dict[str, str] | None, log_path: Path) -> subprocess.Popen:
    """Start `argv` in a new session (= process group) with `env` added to ours; stdout and
    stderr are appended to `log_path`, stdin is /dev/null. OSError when argv[0] cannot run."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def signal_group(process: subprocess.Popen, signum: int) -> None:
    """Send `signum` to the process's group; a group that is already gone is fine."""
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(process: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM the group, SIGKILL it after `grace_s`, then SIGKILL what outlived the leader;
    return the leader's exit status."""
    if process.poll() is None:
        signal_group(process, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            process.wait()
    signal_group(process, signal.SIGKILL)
    return process.returncode
