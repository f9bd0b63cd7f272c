"""Local process runtime: the service, monitors and executors of a session as child processes.

Each child runs in its own process group with its stdout and stderr captured in
`<run_dir>/logs/<name>.log`, and is told by the kernel to die with the coordinator
(PR_SET_PDEATHSIG, armed by `common/process_group.py`'s launcher before it execs the child),
so not even a SIGKILL of `hpcbench run` leaves load generators behind.
`failed_children()` lets the session notice a crash while it waits; `stop_all()` terminates the
group politely, then kills what is left. The runtime never interprets what it starts.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.process_group import signal_group, spawn


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for servers that need a fixed --port)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class ChildProcess:
    name: str
    argv: list[str]
    process: subprocess.Popen
    log_path: Path
    expected_exit: bool = False   # set before stopping it, so its exit is not a failure

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 20) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


class Supervisor:
    """Starts and supervises one session's child processes on this machine."""

    def __init__(self, run_dir: Path):
        self.log_dir = Path(run_dir) / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: list[ChildProcess] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ChildProcess:
        """Start `argv` as the child `name`; a program that cannot be started is E001 for the
        service and E002 for hpcbench's own components, naming the program and the fix."""
        log_path = self.log_dir / f"{name}.log"
        try:
            process = spawn(argv, env, log_path)
        except OSError as error:
            service = name.startswith("service")
            raise HpcbenchError(
                "E001" if service else "E002",
                f"cannot start {name}: {argv[0]!r}: {error.strerror or error}",
                (f"command: {' '.join(argv)}",
                 "fix: install the server program or set its path in servers.service_config"
                 if service else "fix: reinstall hpcbench on this node (make setup)")) from None
        child = ChildProcess(name=name, argv=list(argv), process=process, log_path=log_path)
        self.children.append(child)
        return child

    def failed_children(self) -> list[ChildProcess]:
        """Children that exited although nobody asked them to."""
        return [child for child in self.children
                if not child.expected_exit and child.process.poll() is not None]

    def wait_exits(self, children: list[ChildProcess], timeout_s: float) -> None:
        """Give children that were told to quit (e.g. executors after SHUTDOWN) time to exit
        by themselves, all at once; stop_all deals with those still running."""
        deadline = time.monotonic() + timeout_s
        for child in children:
            child.expected_exit = True
            try:
                child.process.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                pass

    def terminate(self, children: list[ChildProcess]) -> None:
        """SIGTERM children without waiting (stop_all waits for them later)."""
        for child in children:
            child.expected_exit = True
            if child.process.poll() is None:
                signal_group(child.process, signal.SIGTERM)

    def stop_all(self, timeout_s: float = 5.0) -> None:
        """SIGTERM every running child at once, SIGKILL those still there after `timeout_s`."""
        running = [child for child in self.children if child.process.poll() is None]
        for child in running:
            child.expected_exit = True
            signal_group(child.process, signal.SIGTERM)
        self.wait_exits(running, timeout_s)
        for child in running:
            if child.process.poll() is None:
                signal_group(child.process, signal.SIGKILL)
                child.process.wait()
