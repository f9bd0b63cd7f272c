"""The inference service's own CPU time and memory, summed over its process tree."""
from __future__ import annotations

import logging

import psutil

from hpcbench.monitor.reading import Reading

log = logging.getLogger(__name__)


class ServiceProcessSource:
    """Reads CPU seconds and RSS of `pid` and its children (vLLM and Ray fork workers).

    When the process ends the source keeps answering with `hpcbench_service_up 0` and says so
    once on stderr; the monitor goes on with every other metric.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._process: psutil.Process | None = psutil.Process(pid)

    def read(self) -> Reading:
        reading = Reading()
        tree = self._live_tree()
        reading.add("hpcbench_service_up", 1.0 if tree else 0.0)
        if not tree:
            return reading
        cpu_seconds = rss = 0.0
        counted = 0
        for process in tree:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu_seconds += times.user + times.system
                    rss += process.memory_info().rss
                counted += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue  # a child that ended between listing and reading
        reading.add("hpcbench_service_processes", counted)
        reading.add("hpcbench_service_cpu_seconds_total", cpu_seconds)
        reading.add("hpcbench_service_resident_memory_bytes", rss)
        return reading

    def _live_tree(self) -> list[psutil.Process]:
        if self._process is None:
            return []
        try:
            if not self._process.is_running() or self._process.status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(self.pid)
            return [self._process, *self._process.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            log.warning("service process %s has ended; reporting hpcbench_service_up 0 from now on",
                        self.pid)
            self._process = None
            return []
