"""What `hpcbench-executor --out FILE` prints at the end of a standalone run.

The figures come from the measurement core (common/measure): the same rows feed the same
metrics as in the coordinator's results (only requests scheduled in the measured window; ITL
of successful requests; E2E of successful and timed-out ones) and percentiles are exact
nearest-rank ones, so a standalone run and a session over the same samples report the same
numbers.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from hpcbench.common.measure.conversations import ConversationRows
from hpcbench.common.measure.definitions import derive
from hpcbench.common.measure.percentiles import exact_percentiles
from hpcbench.proto.samples import ErrorClass, SampleBatch

SHOWN = {"ttft_ms": "ttft", "itl_ms": "itl", "e2e_ms": "e2e", "dispatch_lag_ms": "dispatch_lag"}


def summarize(batches: Iterable[SampleBatch], window_s: float | None = None) -> dict:
    """Counts, rates over `window_s` (default: first intended send to last end of the measured
    requests) and p50/p99/max in ms of TTFT, ITL, E2E and dispatch lag; a multi-turn run adds
    its conversation metrics (as in summary.json)."""
    batches = list(batches)
    derived = [derive(batch) for batch in batches]
    requests = sum(part.requests for part in derived)
    if not requests:
        return {"requests": 0}
    ok = sum(part.ok for part in derived)
    errors = sum(part.errors for part in derived)
    first = min(part.first_ns for part in derived if part.first_ns is not None)
    last = max(part.last_ns for part in derived if part.last_ns is not None)
    seconds = window_s or (last - first) / 1e9
    output_tokens = sum(part.output_tokens for part in derived)
    summary = {
        "requests": requests,
        "ok": ok,
        "errors": {ErrorClass(code).name: int(count) for code, count in enumerate(errors)
                   if code != ErrorClass.OK and count},
        "request_rate": round(requests / seconds, 2) if seconds else 0.0,
        "output_tokens_per_s": round(output_tokens / seconds, 1) if seconds else 0.0,
    }
    for key, metric in SHOWN.items():
        values = np.concatenate([part.values[metric] for part in derived])
        if len(values):
            p50, p99 = exact_percentiles(values, (50.0, 99.0))
            summary[key] = {"p50": round(p50 / 1e6, 3), "p99": round(p99 / 1e6, 3),
                            "max": round(int(values.max()) / 1e6, 3)}
    conversations = ConversationRows()
    for batch in batches:
        conversations.add(batch)
    if (metrics := conversations.metrics()) is not None:
        summary["conversations"] = metrics
    return summary
