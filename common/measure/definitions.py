"""Metric definitions: per-request latencies and counts derived from one sample batch.

One place defines what TTFT, ITL, ... mean (DESIGN.md section 4), used by the live aggregator
and by the exact recomputation from raw samples, so both always agree. All values are int64 ns.

Only rows of Phase.MEASURED enter the metrics; warmup and drain rows are only counted.
Which rows feed which metric:
    ttft          successful rows with a first token: first - intended (open loop, slot < 0)
                  or first - send (closed loop, slot >= 0: the request is made when a slot frees)
                  (the first token of any kind: reasoning or answer, as AIPerf's TTFT)
    ttfr          successful rows with a reasoning token: first reasoning token - the same start
    ttfa          successful rows with an answer token: first answer token - the same start
                  (AIPerf's TTFO; equals ttft for a stream without reasoning)
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
and itl as the request's largest gap (`meets_slo`). The same rules serve the live aggregator,
the exact recomputation from raw samples, the report's per-request table and the standalone
executor's summary, so none of them can disagree. Percentiles are nearest-rank
(percentiles.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcbench.common.errors import config_error
from hpcbench.proto.samples import ErrorClass, Phase, SampleBatch, TokenSource

METRICS = ("ttft", "itl", "tpot", "e2e", "dispatch_lag", "queue_time", "ttfr", "ttfa")
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
    reasoning_tokens: int         # ok rows: the part of output_tokens that was reasoning
    warmup: int
    drain: int
    first_ns: int | None          # wall clock: earliest intended time of a measured row
    last_ns: int | None           # wall clock: latest end of a measured row


MISSING = -1   # a per-request latency the request does not define (failed, no token, ...)


@dataclass
class _Rows:
    """Which rows define which latency (any phase), and where each row's TTFT starts."""

    ok: np.ndarray
    has_first: np.ndarray      # ttft
    has_tpot: np.ndarray
    has_e2e: np.ndarray
    start: np.ndarray          # intended (open loop) or send (closed loop)


def _rows(columns: dict[str, np.ndarray]) -> _Rows:
    error = columns["error"]
    ok = error == _OK
    has_first = ok & (columns["first_ns"] > 0)
    return _Rows(ok=ok, has_first=has_first, has_tpot=has_first & (columns["tokens_out"] > 1),
                 has_e2e=ok | (error == _TIMEOUT),
                 start=np.where(columns["slot"] < 0, columns["intended_ns"], columns["send_ns"]))


def _tpot(columns: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    first, end, tokens_out = (columns[name][rows] for name in ("first_ns", "end_ns", "tokens_out"))
    return (end - first) // np.maximum(tokens_out - 1, 1)


def _first_of_kind(cols: dict[str, np.ndarray], column: str, ok: np.ndarray,
                   start: np.ndarray) -> np.ndarray:
    """Time to the first token of one kind (reasoning or answer) of the `ok` rows with one."""
    first = cols[column]
    rows = ok & (first > 0)
    return (first - start)[rows]


def request_latencies(columns: dict[str, np.ndarray], itl_ns: np.ndarray | None = None,
                      gaps_per_row: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per row (any phase): ttft, tpot, e2e, ttfr and ttfa in ns, MISSING where the row does not define
    it (see the module docstring); with `itl_ns` also `max_itl`, the row's largest gap (ITL
    SLOs judge a request by it). The report's request table, goodput and SLO judgement use
    these rows; `derive` applies the same row rules to a batch directly."""
    rows = _rows(columns)
    ttft = np.full(len(rows.ok), MISSING, dtype=np.int64)
    ttft[rows.has_first] = (columns["first_ns"] - rows.start)[rows.has_first]
    tpot = np.full(len(rows.ok), MISSING, dtype=np.int64)
    tpot[rows.has_tpot] = _tpot(columns, rows.has_tpot)
    e2e = np.full(len(rows.ok), MISSING, dtype=np.int64)
    e2e[rows.has_e2e] = (columns["end_ns"] - columns["intended_ns"])[rows.has_e2e]
    latencies = {"ttft": ttft, "tpot": tpot, "e2e": e2e}
    for name, column in (("ttfr", "first_reasoning_ns"), ("ttfa", "first_answer_ns")):
        has = rows.ok & (columns[column] > 0)
        latencies[name] = np.full(len(rows.ok), MISSING, dtype=np.int64)
        latencies[name][has] = (columns[column] - rows.start)[has]
    if itl_ns is not None:
        if gaps_per_row is None:
            gaps_per_row = np.maximum(columns["chunks"].astype(np.int64) - 1, 0)
        largest = np.full(len(rows.ok), MISSING, dtype=np.int64)
        has_gaps = (gaps_per_row > 0) & rows.ok
        if has_gaps.any():
            offsets = np.concatenate(([0], np.cumsum(gaps_per_row)))[:-1]
            with_gaps = gaps_per_row > 0
            maxima = np.maximum.reduceat(itl_ns, offsets[with_gaps])
            largest[has_gaps] = maxima[has_gaps[with_gaps]]
        latencies["max_itl"] = largest
    return latencies


def meets_slo(name: str, latencies: dict[str, np.ndarray], limit_ns: int) -> np.ndarray:
    """Per row: within the SLO on `name`. A latency the row lacks does not fail it (TPOT of a
    one-token answer, ITL of a one-chunk answer), except TTFT, which needs a first token."""
    values = latencies["max_itl" if name == "itl" else name]
    if name == "ttft":
        return (values != MISSING) & (values <= limit_ns)
    return (values == MISSING) | (values <= limit_ns)


def derive(batch: SampleBatch, slos_ns: dict[str, int] | None = None,
           queue_threshold_ns: int = DEFAULT_QUEUE_THRESHOLD_NS) -> BatchMetrics:
    """Metric values and counts of one batch (see the module docstring for the definitions).
    It runs for every batch the aggregator takes: rows are selected with masks, per-row
    latency arrays are only built when the trial has SLOs to judge."""
    cols = batch.columns
    phase = cols["phase"]
    measured = phase == _MEASURED
    rows = _rows(cols)
    ok = measured & rows.ok
    intended, send, end = cols["intended_ns"], cols["send_ns"], cols["end_ns"]
    gaps_per_row = np.maximum(cols["chunks"].astype(np.int64) - 1, 0)
    itl = batch.itl_ns if ok.all() else batch.itl_ns[np.repeat(ok, gaps_per_row)]
    ttft_rows, tpot_rows, e2e_rows = (measured & rows.has_first, measured & rows.has_tpot,
                                      measured & rows.has_e2e)
    sent = measured & (send > 0)
    lag = send - intended
    values = {
        "ttft": (cols["first_ns"] - rows.start)[ttft_rows],
        "itl": itl,
        "tpot": _tpot(cols, tpot_rows),
        "e2e": (end - intended)[e2e_rows],
        "dispatch_lag": lag[sent],
        "queue_time": lag[sent & (lag > queue_threshold_ns)],
        "ttfr": _first_of_kind(cols, "first_reasoning_ns", ok, rows.start),
        "ttfa": _first_of_kind(cols, "first_answer_ns", ok, rows.start),
    }
    good = ok
    if slos_ns:
        latencies = request_latencies(cols, batch.itl_ns if "itl" in slos_ns else None,
                                      gaps_per_row)
        for name, limit_ns in slos_ns.items():
            good = good & meets_slo(name, latencies, limit_ns)
    measured_intended = intended[measured]
    return BatchMetrics(
        values=values, requests=int(measured.sum()), ok=int(ok.sum()), good=int(good.sum()),
        errors=np.bincount(cols["error"][measured], minlength=_ERROR_CLASSES)[:_ERROR_CLASSES],
        token_sources=np.bincount(cols["token_source"][ok],
                                  minlength=_TOKEN_SOURCES)[:_TOKEN_SOURCES],
        input_tokens=int(cols["tokens_in"][ok].sum(dtype=np.int64)),
        output_tokens=int(cols["tokens_out"][ok].sum(dtype=np.int64)),
        reasoning_tokens=int(cols["reasoning_tokens"][ok].sum(dtype=np.int64)),
        warmup=int((phase == _WARMUP).sum()), drain=int((phase == _DRAIN).sum()),
        first_ns=batch.epoch_ns + int(measured_intended.min()) if len(measured_intended) else None,
        last_ns=batch.epoch_ns + int(end[measured].max()) if len(measured_intended) else None,
    )


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
