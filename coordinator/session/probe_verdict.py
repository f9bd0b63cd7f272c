"""A capacity-search probe's verdict: does a load meet the search's SLOs, and is that close?

A load meets the SLOs when, over its measured requests (every run of that load pooled: the
histograms merged, the counts added), each `search.slo` metric's percentile is at or below its
limit and the error rate (failed / measured requests) is at or below `search.max_error_rate`.
Percentiles are hpcbench's nearest rank over the HDR histogram of the metric (ITL: one sample
per gap between chunks, TTFT/TPOT/E2E: one per request; docs/metrics.md), so they are the
figures summary.json shows.

A check is close when its SLO limit lies inside the confidence interval of the percentile
(percentile_interval.py): more samples could move the percentile to the other side. Too few
samples to bound a high percentile from above (a p99 of fewer than about 370) leave the
interval open upwards, so any limit above its lower end is close. The
verdict is close when flipping its close checks could flip it: a meeting verdict with any close
check, or a missing one whose every failed check is close (and the errors are within the
ceiling). The error ceiling is compared by its point value and never makes a verdict close: at
a ceiling of 1 % every interval around a handful of errors would straddle it.
"""
from __future__ import annotations

from hpcbench.common.measure.histogram import Histogram
from hpcbench.common.measure.percentile_interval import percentile_interval

NS_PER_MS = 1e6


def judge_load(search: dict, runs: list[tuple[dict, dict[str, Histogram]]]) -> dict:
    """The verdict of one load from its runs, each (summary.json `overall`, metric ->
    cumulative histogram in ns): {"meets", "close", "requests", "error_rate", "checks"}."""
    requests = sum(overall["requests"] for overall, _ in runs)
    errors = sum(overall["error_total"] for overall, _ in runs)
    checks = []
    for metric, slo in sorted(search["slo"].items()):
        merged = _merged([histograms.get(metric) for _, histograms in runs])
        checks.append(_check(metric, slo["percentile"], slo["max"], merged,
                             search["confidence"]))
    error_rate = errors / requests if requests else None
    errors_ok = error_rate is not None and error_rate <= search["max_error_rate"]
    failed = [check for check in checks if not check["meets"]]
    meets = errors_ok and not failed
    close = (any(check["close"] for check in checks) if meets
             else errors_ok and all(check["close"] for check in failed))
    return {"meets": meets, "close": close, "requests": requests, "errors": errors,
            "error_rate": error_rate, "max_error_rate": search["max_error_rate"],
            "errors_ok": errors_ok, "checks": checks}


def _check(metric: str, percentile: float, limit_s: float, histogram: Histogram | None,
           confidence: float) -> dict:
    check = {"metric": metric, "percentile": percentile, "limit_ms": limit_s * 1e3,
             "samples": histogram.count if histogram is not None else 0}
    interval = percentile_interval(histogram, percentile, confidence) if histogram else None
    if interval is None:   # no sample of it (ITL of one-token answers; nothing finished)
        return {**check, "value_ms": None, "interval_ms": None, "meets": False, "close": False}
    limit_ns = limit_s * 1e9
    value = histogram.percentile(percentile)
    low, high = interval      # high None: too few samples to bound the percentile above
    return {**check, "value_ms": value / NS_PER_MS,
            "interval_ms": [low / NS_PER_MS, None if high is None else high / NS_PER_MS],
            "meets": value <= limit_ns,
            "close": low <= limit_ns and (high is None or limit_ns < high)}


def _merged(histograms: list[Histogram | None]) -> Histogram | None:
    present = [histogram for histogram in histograms if histogram is not None]
    if not present:
        return None
    merged = Histogram(present[0].config)
    for histogram in present:
        merged.merge(histogram)
    return merged
