"""The simulator as a real separate process for end-to-end tests (`hpcbench sim --port 0`)."""
from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.waiting import wait_until


@contextlib.contextmanager
def sim_process(work_dir: Path, *flags: str):
    """Yield the base URL of a simulator process; kill it afterwards."""
    port_file = Path(work_dir) / "sim.port"
    log = open(Path(work_dir) / "sim.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "hpcbench.coordinator.cli.main", "sim",
                                "--port", "0", "--port-file", str(port_file), *flags],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: port_file.exists() and port_file.read_text().strip()
                   or process.poll() is not None, timeout=30, what="simulator port file")
        assert process.poll() is None, (Path(work_dir) / "sim.log").read_text()
        yield f"http://127.0.0.1:{int(port_file.read_text())}"
    finally:
        process.kill()
        process.wait()
        log.close()


def served_requests(base_url: str) -> int:
    """The simulator's own count of requests it answered completely (its /metrics)."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(r"^hpcbench_sim_requests_served_total(?:\{[^}]*\})? (\S+)$", text, re.M)
    assert match, "simulator /metrics lacks hpcbench_sim_requests_served_total"
    return int(float(match.group(1)))
