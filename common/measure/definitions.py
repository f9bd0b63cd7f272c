"""Metric definitions: per-request latencies and counts derived from one sample batch.

One place defines what TTFT, ITL, ... mean (DESIGN.md section 4), used by the live aggregator
and by the exact recomputation from raw samples, so both always agree. All values are int64 ns.

Only rows of Phase.MEASURED enter the metrics; warmup and drain rows are only counted.
Which rows feed which metric:
    ttft          successful rows with a first token: first - intended (open loop, slot < 0)
                  or first - send (closed loop, slot >= 0: the request is made when a slot frees)
    itl           every inter-chunk gap of successful rows (one sample per gap)
    tpot          successful rows with >= 2 output tokens: (end - first) / (tokens_out - 1)
    e2e           successful and timed-out rows: end - intended (a timeout ends at the timeout,
                  so a stalled server shows in the tail instead of vanishing from it)
    dispatch_lag  every sent row: send - intended, the client's own delay
    queue_time    the rows whose dispatch lag exceeds `queue_threshold_ns` (1 ms): such a request
                  could not leave on time because every connection/concurrency slot was busy (or
                  the client was saturated); the value is its dispatch lag. Executor scheduling
                  jitter stays far below 1 ms, so on-time requests never count here.
Goodput counts successful rows that meet every SLO of the trial: ttft, tpot, e2e per request,
and itl as the request's largest gap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcbench.common.errors import config_error
from hpcbench.proto.samples import ErrorClass, Phase, SampleBatch, TokenSource

METRICS = ("ttft", "itl", "tpot", "e2e", "dispatch_lag", "queue_time")
SLO_METRICS = ("ttft", "itl", "tpot", "e2e")
DEFAULT_QUEUE_THRESHOLD_NS = 1_000_000
# plain ints: comparing numpy columns with them skips IntEnum attribute lookups per batch
_MEASURED, _WARMUP, _DRAIN = int(Phase.MEASURED), int(Phase.WARMUP), int(Phase.DRAIN)
_OK, _TIMEOUT = int(ErrorClass.OK), int(ErrorClass.TIMEOUT)
_ERROR_CLASSES, _TOKEN_SOURCES = len(ErrorClass), len(TokenSource)


@dataclass
class BatchMetrics:
    """What one batch adds: metric values (ns) and counts of its measured rows."""

    values: dict[str, np.ndarray]
    requests: int                 # measured rows (finished requests, failed ones included)
    ok: int
    good: int                     # ok rows meeting every SLO (equals ok when there are no SLOs)
    errors: np.ndarray            # count per ErrorClass value
    token_sources: np.ndarray     # count per TokenSource value, ok rows
    input_tokens: int             # ok rows
    output_tokens: int            # ok rows
    warmup: int
    drain: int
    first_ns: int | None          # wall clock: earliest intended time of a measured row
    last_ns: int | None           # wall clock: latest end of a measured row


def derive(batch: SampleBatch, slos_ns: dict[str, int] | None = None,
           queue_threshold_ns: int = DEFAULT_QUEUE_THRESHOLD_NS) -> BatchMetrics:
    """Metric values and counts of one batch (see the module docstring for the definitions)."""
    cols = batch.columns
    phase = cols["phase"]
    measured = phase == _MEASURED
    error = cols["error"]
    ok = measured & (error == _OK)
    intended, send, first, end = (cols[name] for name in ("intended_ns", "send_ns", "first_ns",
                                                          "end_ns"))
    tokens_out = cols["tokens_out"]

    gaps_per_row = np.maximum(cols["chunks"].astype(np.int64) - 1, 0)
    itl = batch.itl_ns if ok.all() else batch.itl_ns[np.repeat(ok, gaps_per_row)]
    has_first = ok & (first > 0)
    start = np.where(cols["slot"] < 0, intended, send)
    ttft_rows = has_first
    tpot_rows = has_first & (tokens_out > 1)
    e2e_rows = measured & ((error == _OK) | (error == _TIMEOUT))
    sent = measured & (send > 0)
    lag = send - intended
    values = {
        "ttft": (first - start)[ttft_rows],
        "itl": itl,
        "tpot": (end - first)[tpot_rows] // np.maximum(tokens_out[tpot_rows] - 1, 1),
        "e2e": (end - intended)[e2e_rows],
        "dispatch_lag": lag[sent],
        "queue_time": lag[sent & (lag > queue_threshold_ns)],
    }
    good = int(ok.sum())
    if slos_ns:
        good = int(_meets_slos(batch, ok, start, gaps_per_row, slos_ns).sum())
    measured_intended = intended[measured]
    return BatchMetrics(
        values=values, requests=int(measured.sum()), ok=int(ok.sum()), good=good,
        errors=np.bincount(error[measured], minlength=_ERROR_CLASSES)[:_ERROR_CLASSES],
        token_sources=np.bincount(cols["token_source"][ok],
                                  minlength=_TOKEN_SOURCES)[:_TOKEN_SOURCES],
        input_tokens=int(cols["tokens_in"][ok].sum(dtype=np.int64)),
        output_tokens=int(tokens_out[ok].sum(dtype=np.int64)),
        warmup=int((phase == _WARMUP).sum()), drain=int((phase == _DRAIN).sum()),
        first_ns=batch.epoch_ns + int(measured_intended.min()) if len(measured_intended) else None,
        last_ns=batch.epoch_ns + int(end[measured].max()) if len(measured_intended) else None,
    )


def _meets_slos(batch: SampleBatch, ok: np.ndarray, start: np.ndarray, gaps_per_row: np.ndarray,
                slos_ns: dict[str, int]) -> np.ndarray:
    """Per row: successful and within every SLO (a metric a row lacks does not fail it)."""
    cols = batch.columns
    first, end, intended = cols["first_ns"], cols["end_ns"], cols["intended_ns"]
    tokens_out = cols["tokens_out"]
    meets = ok.copy()
    if "ttft" in slos_ns:
        meets &= (first > 0) & (first - start <= slos_ns["ttft"])
    if "e2e" in slos_ns:
        meets &= end - intended <= slos_ns["e2e"]
    if "tpot" in slos_ns:
        tpot = (end - first) // np.maximum(tokens_out - 1, 1)
        meets &= (tokens_out <= 1) | (tpot <= slos_ns["tpot"])
    if "itl" in slos_ns and len(batch.itl_ns):
        offsets = np.concatenate(([0], np.cumsum(gaps_per_row)))
        has_gaps = gaps_per_row > 0
        largest = np.zeros(len(gaps_per_row), dtype=np.int64)
        largest[has_gaps] = np.maximum.reduceat(batch.itl_ns, offsets[:-1][has_gaps])
        meets &= largest <= slos_ns["itl"]
    return meets


def slos_to_ns(slos_s: dict[str, float] | None) -> dict[str, int]:
    """SLO thresholds given in seconds (as the recipe's durations parse) to integer ns."""
    converted = {}
    for name, seconds in (slos_s or {}).items():
        if name not in SLO_METRICS:
            raise config_error(f"SLO {name!r} is not one of {SLO_METRICS}; rename it in the "
                               "recipe's workload.slos")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
            raise config_error(f"SLO {name}={seconds!r} must be a positive duration in seconds")
        converted[name] = int(round(seconds * 1e9))
    return converted
