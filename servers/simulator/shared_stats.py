"""Statistics of several simulator worker processes, summed for /metrics and /sim/stats.

Each worker owns one row of a shared-memory table and copies its `ServerStats.vector()` there
whenever its counters change (after each batch of tokens, each admission and each finished
request, before the response's last bytes go out), so a scrape answered by any worker sees every
worker's requests, and the served count is exact once a client has its last byte.

The table is an anonymous shared mapping made before the workers are forked, which they
inherit: it has no name to unlink, so nothing is left in /dev/shm whatever kills whom, and no
multiprocessing resource tracker is started (`multiprocessing.shared_memory` starts one, a
process of its own that outlived SIGKILLed simulators).
"""
from __future__ import annotations

import mmap

import numpy as np

from hpcbench.servers.simulator.metrics import ServerStats


class SharedStatsTable:
    """A workers x counters float64 table in memory shared with the processes forked after it
    is made (by the parent process, before it forks the workers)."""

    def __init__(self, workers: int, model: str) -> None:
        self.width = len(ServerStats(model).vector())
        self.model = model
        self.memory = mmap.mmap(-1, workers * self.width * 8,
                                flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.table = np.ndarray((workers, self.width), dtype=np.float64, buffer=self.memory)
        self.table[:] = 0

    def publish(self, worker: int, stats: ServerStats) -> None:
        self.table[worker] = stats.vector()

    def combined(self) -> ServerStats:
        return ServerStats(self.model).load_vector(self.table.sum(axis=0))

    def close(self) -> None:
        del self.table
        self.memory.close()
