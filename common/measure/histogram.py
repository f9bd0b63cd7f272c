"""HDR histograms: counts per bucket of one configuration, recorded in bulk with numpy.

`Recording.of` turns a batch of values into bucket counts once, so one batch can feed several
histograms (its executor's and the global one) cheaply; `Histogram` adds recordings, merges
histograms of the same configuration, and answers percentiles (percentiles.py's nearest rank).
Its standard compressed form is codec.py's.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from hpcbench.common.measure.buckets import HistogramConfig, HistogramError
from hpcbench.common.measure.codec import decode_counts, encode_counts
from hpcbench.common.measure.percentiles import PERCENTILES, percentile_ranks


@dataclass
class Recording:
    """Values turned into bucket counts once, to be added to several histograms cheaply.

    Negative values (a broken timestamp upstream) are rejected and counted; values above the
    configuration's `highest` are recorded as `highest` and counted as clamped.
    """

    count: int
    total: float
    min: int | None
    max: int | None
    clamped: int
    rejected: int
    indices: np.ndarray | None = None   # small batches: bucket index per value
    dense: np.ndarray | None = None     # big batches: a full counts array (np.bincount)

    @classmethod
    def of(cls, config: HistogramConfig, values: np.ndarray) -> Recording:
        values = np.asarray(values, dtype=np.int64)
        rejected = 0
        if len(values) and values.min() < 0:
            negative = values < 0
            rejected = int(negative.sum())
            values = values[~negative]
        if len(values) == 0:
            return cls(0, 0.0, None, None, 0, rejected)
        low, high = int(values.min()), int(values.max())
        clamped = 0
        if high > config.highest:
            clamped = int((values > config.highest).sum())
            values = np.minimum(values, config.highest)
        indices = config.index_of(values)
        recording = cls(len(values), float(values.sum(dtype=np.float64)), low, high, clamped,
                        rejected)
        if len(values) * 8 >= config.counts_len:
            recording.dense = np.bincount(indices, minlength=config.counts_len)
        else:
            recording.indices = indices
        return recording


class Histogram:
    """Counts per bucket plus exact count, min, max, sum and out-of-range tallies."""

    def __init__(self, config: HistogramConfig | None = None) -> None:
        self.config = config or HistogramConfig()
        self.counts = np.zeros(self.config.counts_len, dtype=np.int64)
        self._clear_totals()

    def _filled_range(self) -> slice:
        """The buckets that can be non-zero: those of min .. max (cheaper than all of them)."""
        if self.count == 0:
            return slice(0, 0)
        if self.min_value is None:  # counts filled in by hand: no range known
            return slice(0, len(self.counts))
        return slice(self.config.index_of_value(self.min_value),
                     self.config.index_of_value(min(self.max_value, self.config.highest)) + 1)

    def reset(self) -> None:
        self.counts[self._filled_range()] = 0
        self._clear_totals()

    def _clear_totals(self) -> None:
        self.count = 0
        self.total = 0.0       # sum of recorded values, for the mean
        self.min_value: int | None = None
        self.max_value: int | None = None
        self.clamped = 0       # values above `highest`, recorded as `highest`
        self.rejected = 0      # negative values: not recorded (a broken timestamp upstream)

    def record_many(self, values: np.ndarray) -> None:
        """Record an array of integer values (ns) with a few numpy calls, no per-value Python."""
        self.add(Recording.of(self.config, values))

    def add(self, recording: Recording) -> None:
        """Add values prepared once by `Recording.of` (one batch feeds several histograms)."""
        if recording.count == 0:
            self.rejected += recording.rejected
            return
        if recording.dense is not None:
            self.counts += recording.dense
        else:
            np.add.at(self.counts, recording.indices, 1)
        self.count += recording.count
        self.total += recording.total
        self.clamped += recording.clamped
        self.rejected += recording.rejected
        self.min_value = recording.min if self.min_value is None else min(self.min_value,
                                                                          recording.min)
        self.max_value = recording.max if self.max_value is None else max(self.max_value,
                                                                          recording.max)

    def add_buckets(self, indices: np.ndarray, counts: np.ndarray, *, count: int, total: float,
                    low: int | None, high: int | None, clamped: int, rejected: int) -> None:
        """Add another histogram's filled buckets (`indices` increasing, within this
        configuration) with its exact count, sum, min, max and out-of-range tallies: the
        histogram-mode wire form (proto/samples.py), merged without a dense copy."""
        if len(indices) and int(indices[-1]) >= self.config.counts_len:
            raise HistogramError(f"bucket index {int(indices[-1])} is outside the "
                                 f"configuration's {self.config.counts_len} buckets")
        self.rejected += rejected
        if count == 0:
            return
        self.counts[indices.astype(np.intp)] += counts
        self.count += count
        self.total += total
        self.clamped += clamped
        self.min_value = low if self.min_value is None else min(self.min_value, low)
        self.max_value = high if self.max_value is None else max(self.max_value, high)

    def merge(self, other: Histogram) -> None:
        """Add another histogram of the same configuration into this one."""
        if other.config != self.config:
            raise HistogramError(f"cannot merge histograms of configurations {other.config} "
                                 f"and {self.config}")
        filled = other._filled_range()
        self.counts[filled] += other.counts[filled]
        self.count += other.count
        self.total += other.total
        self.clamped += other.clamped
        self.rejected += other.rejected
        for name, pick in (("min_value", min), ("max_value", max)):
            theirs, ours = getattr(other, name), getattr(self, name)
            if theirs is not None:
                setattr(self, name, theirs if ours is None else pick(ours, theirs))

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
        """Values at several percentiles (highest equivalent value of the bucket, within min/max)."""
        if self.count == 0:
            return [None] * len(percentiles)
        low, high = self.min_value, self.max_value
        filled = self._filled_range()
        cumulative = np.cumsum(self.counts[filled])
        indices = filled.start + np.searchsorted(cumulative,
                                                 percentile_ranks(percentiles, self.count))
        return [min(max(self.config.highest_equivalent_value(index), low), high)
                for index in indices.tolist()]

    def percentile(self, percentile: float) -> int | None:
        return self.percentiles((percentile,))[0]

    def counts_at_or_below(self, values: list[int]) -> list[int]:
        """How many recorded values are at or below each of `values` (Prometheus `le`
        buckets): exact below min and from max on, else counting the whole bucket `value`
        falls in, so a value equal to a bound is always inside it."""
        if self.count == 0:
            return [0] * len(values)
        bounds = np.asarray(values, dtype=np.int64)
        filled = self._filled_range()
        cumulative = np.concatenate(([0], np.cumsum(self.counts[filled])))
        positions = self.config.index_of(np.minimum(bounds, self.config.highest)) - filled.start + 1
        counts = cumulative[np.clip(positions, 0, len(cumulative) - 1)]
        counts = np.where(bounds < self.min_value, 0, counts)
        return np.where(bounds >= self.max_value, self.count, counts).tolist()

    def encode(self) -> str:
        """The standard compressed V2 form, base64 ("HISTFAAA..."), as in .hlog files."""
        return base64.b64encode(encode_counts(self.config, self.counts)).decode("ascii")

    @classmethod
    def decode(cls, text: str | bytes) -> Histogram:
        """A histogram from the base64 compressed V2 form (ours or any HdrHistogram's)."""
        config, counts = decode_counts(base64.b64decode(text, validate=True))
        histogram = cls(config)
        histogram.counts[:len(counts)] = counts
        histogram.count = int(counts.sum())
        filled = np.flatnonzero(counts)
        if len(filled):
            histogram.min_value = int(config.lowest_equivalent(filled[0]))
            histogram.max_value = int(config.highest_equivalent(filled[-1]))
            middles = (config.lowest_equivalent(filled) + config.highest_equivalent(filled)) // 2
            histogram.total = float((middles * counts[filled]).sum(dtype=np.float64))
        return histogram
