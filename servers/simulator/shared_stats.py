"""Statistics of several simulator worker processes, summed for /metrics and /sim/stats.

Each worker owns one row of a shared-memory table and copies its `ServerStats.vector()` there
whenever its counters change (after each batch of tokens, each admission and each finished
request, before the response's last bytes go out), so a scrape answered by any worker sees every
worker's requests, and the served count is exact once a client has its last byte.
"""
from __future__ import annotations

from multiprocessing import shared_memory

import numpy as np

from hpcbench.servers.simulator.metrics import ServerStats


class SharedStatsTable:
    """A workers x counters float64 table in shared memory (created by the parent process)."""

    def __init__(self, workers: int, model: str, name: str | None = None) -> None:
        self.width = len(ServerStats(model).vector())
        self.model = model
        size = workers * self.width * 8
        self.memory = (shared_memory.SharedMemory(name=name) if name
                       else shared_memory.SharedMemory(create=True, size=size))
        self.table = np.ndarray((workers, self.width), dtype=np.float64, buffer=self.memory.buf)
        if name is None:
            self.table[:] = 0

    def publish(self, worker: int, stats: ServerStats) -> None:
        self.table[worker] = stats.vector()

    def combined(self) -> ServerStats:
        return ServerStats(self.model).load_vector(self.table.sum(axis=0))

    def close(self, unlink: bool = False) -> None:
        del self.table
        self.memory.close()
        if unlink:
            self.memory.unlink()
