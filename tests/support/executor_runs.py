"""Running the executor in-process for tests: one trial from a workload dict, rows as columns."""
from __future__ import annotations

import numpy as np
import uvloop

from hpcbench.executor.config import LoadConfig
from hpcbench.executor.engine import run_trial
from hpcbench.executor.sinks import MemorySink


def run_load(url: str, stop_event=None, **workload):
    """One trial with a workload dict (defaults: 1 slot, 8 tokens, 6 requests) -> stats, rows."""
    workload = {"api": "openai-chat", "model": "sim-model", "duration": 0, "max_requests": 6,
                "concurrency": 1, "request_timeout": 10,
                "dataset": {"input_tokens": 12, "output_tokens": 8, "ignore_eos": True},
                **workload}
    config = LoadConfig.from_workload(workload, url)
    sink = MemorySink()
    stats = uvloop.run(run_trial(config, sink, stop_event))
    return stats, sink.batches


def rows(batches) -> dict[str, np.ndarray]:
    return {name: np.concatenate([b.columns[name] for b in batches])
            for name in batches[0].columns}


def gaps_per_row(batches) -> list[np.ndarray]:
    result = []
    for batch in batches:
        offsets = batch.itl_offsets()
        result.extend(batch.itl_ns[offsets[i]:offsets[i + 1]] for i in range(batch.n))
    return result
