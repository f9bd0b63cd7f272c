"""A histogram kept as its filled buckets only: per-executor statistics of a large fleet.

A dense `Histogram` holds every bucket of the configuration (about 23,500 int64 counts, 188 kB,
at 1 µs .. 1 h and 3 significant digits); two per metric (interval and cumulative) and executor
cost 3 MB per executor, 3 GB of coordinator memory at 1,000 executors. `SparseHistogram` holds
the same counts as (bucket index, count) pairs of its filled buckets, a few tens of kB for real
latency spreads, and answers the same percentiles: a nearest rank lands on the same bucket
whether the empty ones in between are stored or not. Added buckets are merged at once: in place
when they are all filled already (the usual case once a stream has run a while), else through a
dense window over the filled span. The aggregator uses it for per-executor scopes fed by
histogram-mode summaries (110 MB instead of 3 GB for 1,000 executors); global statistics stay
dense (their encoded form and Prometheus buckets need the full layout).
"""
from __future__ import annotations

import numpy as np

from hpcbench.common.measure.buckets import HistogramConfig, HistogramError
from hpcbench.common.measure.histogram import Recording
from hpcbench.common.measure.percentiles import PERCENTILES, percentile_ranks


class SparseHistogram:
    """Filled buckets (increasing indices, positive counts) plus exact count, min, max, sum
    and out-of-range tallies; the interface of `Histogram` that statistics need."""

    def __init__(self, config: HistogramConfig | None = None) -> None:
        self.config = config or HistogramConfig()
        self._indices = np.zeros(0, dtype=np.int32)
        self._counts = np.zeros(0, dtype=np.int64)
        self._clear_totals()

    def _clear_totals(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min_value: int | None = None
        self.max_value: int | None = None
        self.clamped = 0
        self.rejected = 0

    def reset(self) -> None:
        self._indices = self._indices[:0]
        self._counts = self._counts[:0]
        self._clear_totals()

    def add(self, recording: Recording) -> None:
        """Values prepared by `Recording.of` (as `Histogram.add`)."""
        if recording.dense is not None:
            indices = np.flatnonzero(recording.dense)
            counts = recording.dense[indices]
        elif recording.indices is not None:
            indices, counts = np.unique(recording.indices, return_counts=True)
        else:
            indices = counts = np.zeros(0, dtype=np.int64)
        self.add_buckets(indices, counts, count=recording.count, total=recording.total,
                         low=recording.min, high=recording.max, clamped=recording.clamped,
                         rejected=recording.rejected)

    def add_buckets(self, indices: np.ndarray, counts: np.ndarray, *, count: int, total: float,
                    low: int | None, high: int | None, clamped: int, rejected: int) -> None:
        """Add filled buckets (indices increasing, within the configuration) and totals."""
        if len(indices) and int(indices[-1]) >= self.config.counts_len:
            raise HistogramError(f"bucket index {int(indices[-1])} is outside the "
                                 f"configuration's {self.config.counts_len} buckets")
        self.rejected += rejected
        if count == 0:
            return
        self._merge_buckets(indices.astype(np.int32, copy=False), counts)
        self.count += count
        self.total += total
        self.clamped += clamped
        self.min_value = low if self.min_value is None else min(self.min_value, low)
        self.max_value = high if self.max_value is None else max(self.max_value, high)

    def merge(self, other: SparseHistogram) -> None:
        """Add another sparse histogram of the same configuration."""
        if other.config != self.config:
            raise HistogramError(f"cannot merge histograms of configurations {other.config} "
                                 f"and {self.config}")
        indices, counts = other.filled()
        self.add_buckets(indices, counts, count=other.count, total=other.total,
                         low=other.min_value, high=other.max_value, clamped=other.clamped,
                         rejected=other.rejected)

    def filled(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices, counts) of the filled buckets, indices increasing."""
        return self._indices, self._counts

    def _merge_buckets(self, indices: np.ndarray, counts: np.ndarray) -> None:
        ours = self._indices
        if len(ours):
            positions = np.searchsorted(ours, indices)
            inside = positions < len(ours)
            if inside.all() and (ours[positions] == indices).all():
                self._counts[positions] += counts         # every bucket filled already
                return
            low, high = min(int(ours[0]), int(indices[0])), max(int(ours[-1]), int(indices[-1]))
        else:
            low, high = int(indices[0]), int(indices[-1])
        window = np.zeros(high - low + 1, dtype=np.int64)   # the filled span only
        window[ours - low] = self._counts
        window[indices - low] += counts
        filled = np.flatnonzero(window)
        self._indices = (filled + low).astype(np.int32)
        self._counts = window[filled]

    @property
    def min(self) -> int | None:
        return self.min_value

    @property
    def max(self) -> int | None:
        return self.max_value

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def percentiles(self, percentiles=PERCENTILES) -> list[int | None]:
        """The values `Histogram.percentiles` gives for the same counts."""
        if self.count == 0:
            return [None] * len(percentiles)
        indices, counts = self.filled()
        positions = np.searchsorted(np.cumsum(counts), percentile_ranks(percentiles, self.count))
        return [min(max(self.config.highest_equivalent_value(int(indices[position])),
                        self.min_value), self.max_value) for position in positions.tolist()]
