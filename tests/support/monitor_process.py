"""Run `hpcbench-monitor` as a real child process in a test, and always clean it up."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.waiting import wait_until

MONITOR = str(Path(sys.executable).with_name("hpcbench-monitor"))


@contextlib.contextmanager
def monitor_process(workdir: Path, *args: str, env: dict | None = None,
                    serve_prometheus: bool = True) -> Iterator[tuple[subprocess.Popen, int | None]]:
    """Start the monitor (with a Prometheus endpoint on a free port unless told not to) and
    yield (process, port) once it serves; SIGTERM then SIGKILL on the way out."""
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / "prometheus.port"
    argv = [MONITOR, *args]
    if serve_prometheus:
        argv += ["--prometheus-port", "0", "--prometheus-port-file", str(port_file)]
    stderr = (workdir / "monitor.stderr").open("w")
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr,
                               env=env or dict(os.environ))
    try:
        port = None
        if serve_prometheus:
            wait_until(lambda: port_file.exists() or process.poll() is not None, 30,
                       what="the monitor's Prometheus port file")
            assert process.poll() is None, (workdir / "monitor.stderr").read_text()
            port = int(port_file.read_text())
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        stderr.close()
