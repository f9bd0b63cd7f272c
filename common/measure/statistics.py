"""Statistics over a span of samples: histograms per metric plus request, token, error counts.

A `MetricSet` covers one span (an interval or a whole trial) of one scope (an executor, or all
of them); `stats()` renders it as the plain-JSON block that snapshots, the bus, summary.json
and summary.csv share: counts, rates, goodput and per metric count/mean/min/p50..p99.9/max in
milliseconds. `exact_stats` renders raw values the same way, for the exact-vs-HDR comparison;
`latency_buckets` counts values per fixed bucket, for Prometheus histograms.
"""
from __future__ import annotations

import numpy as np

from hpcbench.common.measure import definitions
from hpcbench.common.measure.buckets import HistogramConfig
from hpcbench.common.measure.histogram import Histogram, Recording
from hpcbench.common.measure.percentiles import PERCENTILES, exact_percentiles
from hpcbench.proto.samples import ErrorClass, TokenSource

PERCENTILE_KEYS = tuple(f"p{p:g}" for p in PERCENTILES)   # p50 p90 p95 p99 p99.9
NS_PER_MS = 1e6
# Fixed bucket bounds (s) of the Prometheus latency histograms: vLLM's own (so a server's and
# hpcbench's histograms line up), ITL/TPOT starting at 1 ms for fast models.
TOKEN_GAP_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                       0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
LATENCY_BUCKETS_S = {
    "ttft": (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
             7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
    "itl": TOKEN_GAP_BUCKETS_S, "tpot": TOKEN_GAP_BUCKETS_S,
    "e2e": (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
            120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0),
}


def _ms(value_ns: float | None) -> float | None:
    return None if value_ns is None else value_ns / NS_PER_MS


class MetricSet:
    """Histograms per metric and counters over one span of time (an interval or cumulative)."""

    def __init__(self, config: HistogramConfig):
        self.histograms = {name: Histogram(config) for name in definitions.METRICS}
        self.reset()

    def reset(self) -> None:
        for histogram in self.histograms.values():
            histogram.reset()
        self.requests = self.ok = self.good = 0
        self.input_tokens = self.output_tokens = self.warmup = self.drain = 0
        self.reasoning_tokens = 0
        self.errors = np.zeros(len(ErrorClass), dtype=np.int64)
        self.token_sources = np.zeros(len(TokenSource), dtype=np.int64)
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    def add(self, batch: definitions.BatchMetrics, recordings: dict[str, Recording]) -> None:
        for name, recording in recordings.items():
            self.histograms[name].add(recording)
        self._add_counters(batch)

    def merge(self, other: MetricSet) -> None:
        for name, histogram in other.histograms.items():
            if histogram.count or histogram.rejected:
                self.histograms[name].merge(histogram)
        self._add_counters(other)

    def _add_counters(self, other) -> None:
        self.requests += other.requests
        self.ok += other.ok
        self.good += other.good
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.warmup += other.warmup
        self.drain += other.drain
        self.errors += other.errors
        self.token_sources += other.token_sources
        if other.first_ns is not None:
            self.first_ns = other.first_ns if self.first_ns is None else min(self.first_ns,
                                                                             other.first_ns)
            self.last_ns = other.last_ns if self.last_ns is None else max(self.last_ns,
                                                                          other.last_ns)

    @property
    def window_s(self) -> float | None:
        """Measured window from the samples' own clocks: first intended send to last end."""
        if self.first_ns is None or self.last_ns <= self.first_ns:
            return None
        return (self.last_ns - self.first_ns) / 1e9

    def stats(self, seconds: float | None, with_goodput: bool) -> dict:
        """Counts, rates over `seconds` and latency statistics (ms) as plain JSON types."""
        def rate(amount: int) -> float | None:
            return amount / seconds if seconds else None

        return {
            "requests": self.requests, "ok": self.ok,
            "errors": {ErrorClass(code).name.lower(): int(count)
                       for code, count in enumerate(self.errors) if code and count},
            "error_total": self.requests - self.ok,
            "warmup_requests": self.warmup, "drain_requests": self.drain,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            # of output_tokens: reasoning (docs/metrics.md "Reasoning tokens") and the answer
            "reasoning_tokens": self.reasoning_tokens,
            "answer_tokens": self.output_tokens - self.reasoning_tokens,
            "token_sources": {TokenSource(code).name.lower(): int(count)
                              for code, count in enumerate(self.token_sources) if count},
            "seconds": seconds,
            "req_per_s": rate(self.requests),
            "output_tokens_per_s": rate(self.output_tokens),
            "total_tokens_per_s": rate(self.output_tokens + self.input_tokens),
            "good_requests": self.good if with_goodput else None,
            "goodput_req_per_s": rate(self.good) if with_goodput else None,
            "latency": {name: histogram_stats(histogram)
                        for name, histogram in self.histograms.items()},
            # values a histogram could not hold as they were: negative ones (a broken
            # timestamp upstream, not recorded) and ones above 1 h (recorded as 1 h)
            "invalid_values": {name: {"negative": histogram.rejected,
                                      "above_highest": histogram.clamped}
                               for name, histogram in self.histograms.items()
                               if histogram.rejected or histogram.clamped},
        }


def histogram_stats(histogram: Histogram) -> dict:
    """count, mean, min, p50..p99.9, max of a histogram, in ms."""
    values = dict(zip(PERCENTILE_KEYS, map(_ms, histogram.percentiles())))
    return {"count": histogram.count, "mean": _ms(histogram.mean), "min": _ms(histogram.min),
            **values, "max": _ms(histogram.max)}


def latency_buckets(metric_set: MetricSet) -> dict:
    """Per metric of LATENCY_BUCKETS_S: its bounds (`le`, s) and how many values are at or
    below each (`counts`, cumulative as in Prometheus), for histogram exposition."""
    return {name: {"le": list(bounds), "counts": metric_set.histograms[name].counts_at_or_below(
                [round(bound * 1e9) for bound in bounds])}
            for name, bounds in LATENCY_BUCKETS_S.items()}


def exact_stats(values: np.ndarray) -> dict:
    """The same statistics as `histogram_stats`, computed exactly from raw values."""
    if len(values) == 0:
        return {"count": 0, "mean": None, "min": None,
                **dict.fromkeys(PERCENTILE_KEYS), "max": None}
    return {"count": int(len(values)), "mean": _ms(float(values.mean())),
            "min": _ms(int(values.min())),
            **dict(zip(PERCENTILE_KEYS, map(_ms, exact_percentiles(values)))),
            "max": _ms(int(values.max()))}


class Scope:
    """An interval set and a cumulative set for one executor, or for all of them."""

    def __init__(self, config: HistogramConfig):
        self.interval = MetricSet(config)
        self.cumulative = MetricSet(config)

    def fold(self) -> None:
        """Add the finished interval to the cumulative set and start a new interval."""
        self.cumulative.merge(self.interval)
        self.interval.reset()
