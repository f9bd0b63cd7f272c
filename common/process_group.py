"""Start and stop a program in its own process group, its output in a log file; children that
die with their parent.

The one place where hpcbench spawns and stops processes (the session's children in
`coordinator/launch/supervisor.py`, servers the tests start directly (tests/support/standalone_server.py)): a
process group lets a stop reach everything the program started (Ray's raylets, vLLM's engine
core, srun's tasks).

A stop needs a live parent to send it. So that not even a SIGKILL of the parent leaves its
children running, every child hpcbench starts asks the kernel for a parent-death signal
(PR_SET_PDEATHSIG) and then checks that its parent is still there (it may have died between
the fork and the prctl, and then no signal will ever come):
- a program started with `spawn` (or wrapped by `guarded`) goes through this module run as a
  tiny launcher (`python -m hpcbench.common.process_group PARENT_PID -- argv...`) that arms
  the signal and execs argv: no Python code runs between fork and exec in the parent, whose
  threads (gRPC's, in the coordinator) make that unsafe;
- a forked worker (the simulator's, `servers/simulator/workers.py`) calls `die_with_parent`
  first thing.
The kernel sends the signal when the *thread* that forked the child ends, so start children
from a thread that lives as long as they should (the main thread, a session's thread).
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> bool:
    """Have the kernel send `signum` to this process when its parent dies; return whether the
    parent is still `parent_pid` (False: it died before the signal was armed, so exit now)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        pass  # not Linux: the explicit stops (and the executors' lease) still clean up
    return os.getppid() == parent_pid


def guarded(argv: list[str]) -> list[str]:
    """argv wrapped in the launcher that ties the child's life to this process."""
    return [sys.executable, "-m", "hpcbench.common.process_group", str(os.getpid()), "--",
            *argv]


def _launch(parent_pid: int, argv: list[str]) -> None:
    """The launcher: arm the parent-death signal, make sure the parent is there, exec argv."""
    if not die_with_parent(parent_pid):
        sys.exit(f"hpcbench: parent {parent_pid} is gone; not starting {argv[0]}")
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        sys.exit(f"hpcbench: cannot start {argv[0]!r}: {error.strerror}")


def spawn(argv: list[str], env: dict[str, str] | None, log_path: Path) -> subprocess.Popen:
    """Start `argv` in a new session (= process group) with `env` added to ours, dying with
    this process (SIGTERM, see above); stdout and stderr are appended to `log_path`, stdin is
    /dev/null. FileNotFoundError when argv[0] is not an executable program (found on the PATH
    the child gets), OSError when the launcher cannot run."""
    environment = {**os.environ, **(env or {})}
    if shutil.which(argv[0], path=environment.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(errno.ENOENT, "no such executable program", argv[0])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(guarded(argv), env=environment, stdout=log,
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


if __name__ == "__main__":
    _parent, _separator, *_argv = sys.argv[1:]
    _launch(int(_parent), _argv)
