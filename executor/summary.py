"""A short summary of sample batches (exact percentiles with numpy), for standalone runs.

The coordinator's aggregator is the real consumer of batches; this is what `hpcbench-executor
--out FILE` prints at the end, and what tests and benches use to read a run at a glance.
Only requests scheduled in the measured window count (Phase.MEASURED).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from hpcbench.proto.samples import ErrorClass, Phase, SampleBatch


def measured_rows(batches: Iterable[SampleBatch]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Concatenated MEASURED rows and their ITL gaps."""
    columns: dict[str, list] = {}
    gaps = []
    for batch in batches:
        keep = batch.columns["phase"] == Phase.MEASURED
        offsets = batch.itl_offsets()
        for index in np.flatnonzero(keep):
            gaps.append(batch.itl_ns[offsets[index]:offsets[index + 1]])
        for name, column in batch.columns.items():
            columns.setdefault(name, []).append(column[keep])
    merged = {name: np.concatenate(parts) for name, parts in columns.items()}
    return merged, (np.concatenate(gaps) if gaps else np.zeros(0, dtype=np.int64))


def ttft_ns(columns: dict[str, np.ndarray]) -> np.ndarray:
    """TTFT per request with a first token: from intended (open loop) or send (closed loop)."""
    has_first = columns["first_ns"] > 0
    start = np.where(columns["slot"] >= 0, columns["send_ns"], columns["intended_ns"])
    return (columns["first_ns"] - start)[has_first]


def summarize(batches: Iterable[SampleBatch], window_s: float | None = None) -> dict:
    columns, itl = measured_rows(batches)
    if not columns or not len(columns["req_id"]):
        return {"requests": 0}
    errors = columns["error"]
    ok = errors == ErrorClass.OK
    span_ns = int(columns["end_ns"].max() - columns["intended_ns"].min())
    seconds = window_s or span_ns / 1e9
    summary = {
        "requests": int(len(errors)),
        "ok": int(ok.sum()),
        "errors": {ErrorClass(code).name: int((errors == code).sum())
                   for code in np.unique(errors[~ok])},
        "request_rate": round(len(errors) / seconds, 2) if seconds else 0.0,
        "output_tokens_per_s": round(float(columns["tokens_out"][ok].sum()) / seconds, 1)
        if seconds else 0.0,
    }
    send = columns["send_ns"]
    lag = (send - columns["intended_ns"])[send > 0]
    for name, values in (("ttft_ms", ttft_ns({k: v[ok] for k, v in columns.items()})),
                         ("itl_ms", itl),
                         ("e2e_ms", (columns["end_ns"] - columns["intended_ns"])[ok]),
                         ("dispatch_lag_ms", lag)):
        if len(values):
            p50, p99 = np.percentile(values, [50, 99]) / 1e6
            summary[name] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3),
                             "max": round(float(values.max()) / 1e6, 3)}
    return summary
