"""Open-loop arrival schedules: intended send times as offsets (seconds) from the trial start t0.

Every offset is computed from t0 and the schedule alone, never from "now", so a late dispatch
never shifts the requests after it (no drift, no coordinated omission). Offsets come in numpy
blocks: a run at thousands of requests per second costs a few vector operations per block.

Ramp-up is a time warp applied to any pattern: the process is generated at full rate in
"schedule time" s and mapped to wall time t so that the rate grows linearly from 0 to full over
`ramp_up` seconds (t = sqrt(2*R*s) for s < R/2, else t = s + R/2).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np

from hpcbench.common.errors import config_error
from hpcbench.executor.config import LoadSpec

BLOCK = 4096


def arrival_offsets(spec: LoadSpec, horizon: float | None, seed: int = 0,
                    executor_index: int = 0, executor_count: int = 1,
                    block: int = BLOCK) -> Iterator[np.ndarray]:
    """Yield ascending float64 arrays of intended offsets < `horizon` (None: no end)."""
    if spec.pattern == "trace":
        offsets = load_trace(spec.trace)[executor_index::executor_count]
        yield from _clip(iter([offsets]), horizon)
        return
    rng = np.random.default_rng([seed, executor_index])
    raw = _schedule_time_blocks(spec, rng, block)
    if spec.ramp_up > 0:
        raw = (_ramp(s, spec.ramp_up) for s in raw)
    yield from _clip(raw, horizon)


def closed_loop_starts(slots: int, ramp_up: float) -> np.ndarray:
    """Offsets at which each closed-loop slot starts: staggered evenly over `ramp_up`."""
    return np.arange(slots, dtype=np.float64) * (ramp_up / slots if slots else 0.0)


def _schedule_time_blocks(spec: LoadSpec, rng: np.random.Generator,
                          block: int) -> Iterator[np.ndarray]:
    """The full-rate process in schedule time, block by block."""
    start, index = 0.0, 0
    while True:
        if spec.pattern == "constant":
            offsets = spec.phase_offset + (index + np.arange(block)) / spec.rate
            index += block
        elif spec.pattern == "burst":
            bursts = index + np.arange(max(block // spec.burst_size, 1))
            offsets = np.repeat(bursts * spec.burst_pause, spec.burst_size)
            index += len(bursts)
        else:
            if spec.pattern == "poisson":
                gaps = rng.exponential(1.0 / spec.rate, block)
            else:  # gamma: shape = burstiness, mean gap 1/rate
                shape = spec.burstiness
                gaps = rng.gamma(shape, 1.0 / (spec.rate * shape), block)
            offsets = start + np.cumsum(gaps)
            start = float(offsets[-1])
        yield offsets


def _ramp(schedule_time: np.ndarray, ramp_up: float) -> np.ndarray:
    half = ramp_up / 2
    return np.where(schedule_time < half,
                    np.sqrt(2 * ramp_up * np.minimum(schedule_time, half)),
                    schedule_time + half)


def _clip(blocks: Iterator[np.ndarray], horizon: float | None) -> Iterator[np.ndarray]:
    for offsets in blocks:
        if horizon is not None and len(offsets) and offsets[-1] >= horizon:
            kept = offsets[offsets < horizon]
            if len(kept):
                yield kept
            return
        if len(offsets):
            yield offsets


def load_trace(path: str | None) -> np.ndarray:
    """Offsets from a JSONL trace: one request per line, `{"timestamp": s}` (or
    `{"timestamp_ms": ms}` or a bare number of seconds); made relative to the first, sorted."""
    if not path:
        raise config_error("workload.load.trace is required for pattern: trace "
                           "(a JSONL file with one {\"timestamp\": seconds} per line)")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise config_error(f"workload.load.trace={path!r} cannot be read: {error.strerror}; "
                           "give an existing JSONL file") from None
    times = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            times.append(_trace_time(json.loads(line)))
        except (ValueError, TypeError, KeyError) as error:
            raise config_error(f"trace {path} line {number}: {error}; expected "
                               "{\"timestamp\": seconds} or {\"timestamp_ms\": ms}") from None
    if not times:
        raise config_error(f"trace {path} has no requests; add lines like {{\"timestamp\": 0.5}}")
    offsets = np.sort(np.asarray(times, dtype=np.float64))
    return offsets - offsets[0]


def _trace_time(entry) -> float:
    if isinstance(entry, dict):
        value = entry["timestamp"] if "timestamp" in entry else entry["timestamp_ms"] / 1000.0
    else:
        value = entry
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"timestamp {value!r} is not a number")
    return float(value)
