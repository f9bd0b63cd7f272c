"""The monitor's service source follows a real child process tree and reports its end (the other
sources are checked in process by tests/unit/test_monitor_sources.py)."""
from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from hpcbench.monitor.service_process import ServiceProcessSource


def test_service_source_follows_the_process_tree_and_reports_its_end():
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', "
         "'import sys; print(\"child\", flush=True); sys.stdin.read()'], stdin=sys.stdin); "
         "print('parent', flush=True); sys.stdin.read(); child.wait()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert {parent.stdout.readline().strip() for _ in range(2)} == {"parent", "child"}
        source = ServiceProcessSource(parent.pid)
        reading = source.read()
        assert reading.metrics["hpcbench_service_up"] == 1.0
        assert reading.metrics["hpcbench_service_processes"] == 2
        tree = [psutil.Process(parent.pid), *psutil.Process(parent.pid).children()]
        rss = reading.metrics["hpcbench_service_resident_memory_bytes"]
        assert rss > tree[0].memory_info().rss  # the child counts too
        assert rss == pytest.approx(sum(p.memory_info().rss for p in tree), rel=0.2)
        assert reading.metrics["hpcbench_service_cpu_seconds_total"] > 0
    finally:
        parent.kill()
        parent.wait()
        parent.stdin.close()  # EOF ends the child too
        parent.stdout.close()
    assert source.read().metrics == {"hpcbench_service_up": 0.0}
