"""HDR-style histograms: bulk recording with numpy and the standard HdrHistogram V2 encoding.

The bucket layout is HdrHistogram's (Gil Tene's), so a histogram encoded here decodes in any
HdrHistogram implementation (Java, C, Go, Python `hdrhistogram`) and vice versa:

- values below 2 * 10**significant_digits units sit in buckets one unit wide, where a unit is the
  largest power of two not above `lowest`; above that every power of two of range is split into
  `sub_bucket_half_count` equal buckets, so the relative error of any value is below
  1 / sub_bucket_half_count (0.098 % at 3 significant digits);
- `record_many` computes the bucket index of a whole numpy array at once (float64 exponent bits
  give the bit length) and adds them with `np.bincount`: no Python call per value.

Percentiles use the nearest-rank definition (the smallest value with at least p % of the values
at or below it), the same as HdrHistogram; `exact_percentiles` applies it to raw samples, so an
HDR percentile and an exact one differ only by the bucket width.

The interval log (`IntervalLogWriter`) is HdrHistogram's text format 1.3: one line per interval
`Tag=NAME,start_s,length_s,max_ms,BASE64`, readable by HistogramLogReader/HistogramLogProcessor.
"""
from __future__ import annotations

import base64
import math
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import TextIO

import numpy as np

from hpcbench.common.errors import config_error

# V2 cookies: the base values of the format with word-size nibble 0x10 ("LEB128 zigzag counts").
V2_ENCODING_COOKIE = 0x1C849303 | 0x10
V2_COMPRESSED_COOKIE = 0x1C849304 | 0x10
_COOKIE_BASE_MASK = ~0xF0
# cookie, payload length, normalizing index offset, significant digits, lowest, highest,
# integer-to-double conversion ratio; big-endian like every HdrHistogram implementation.
_PAYLOAD_HEADER = struct.Struct(">iiiiqqd")
_COMPRESSED_HEADER = struct.Struct(">ii")
_MAX_EXACT_FLOAT = 1 << 53  # bit lengths come from float64 exponents: exact below this

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


class HistogramError(ValueError):
    """Histograms of different configurations combined, or an encoded histogram that is corrupt."""


@dataclass(frozen=True)
class HistogramConfig:
    """One configuration for a whole run (DESIGN.md section 5): values in nanoseconds."""

    lowest: int = 1_000                  # lowest discernible value: 1 µs
    highest: int = 3_600_000_000_000     # highest trackable value: 1 h
    significant_digits: int = 3

    def __post_init__(self) -> None:
        for name in ("lowest", "highest"):  # 3_600e9 is a fine way to write 1 h in ns
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():
                object.__setattr__(self, name, int(value))
        if not isinstance(self.lowest, int) or self.lowest < 1:
            raise config_error(f"histogram lowest={self.lowest!r} must be an integer >= 1 (ns)")
        if not isinstance(self.highest, int) or not 2 * self.lowest <= self.highest <= _MAX_EXACT_FLOAT:
            raise config_error(f"histogram highest={self.highest!r} must be an integer between "
                               f"2 * lowest ({2 * self.lowest}) and 2**53 (ns)")
        if self.significant_digits not in range(1, 6):
            raise config_error(f"histogram significant_digits={self.significant_digits!r} "
                               "must be 1..5 (3 is usual)")

    @cached_property
    def unit_magnitude(self) -> int:
        return self.lowest.bit_length() - 1

    @cached_property
    def sub_bucket_half_count_magnitude(self) -> int:
        largest_single_unit_value = 2 * 10 ** self.significant_digits
        return max((largest_single_unit_value - 1).bit_length(), 1) - 1

    @cached_property
    def sub_bucket_half_count(self) -> int:
        return 1 << self.sub_bucket_half_count_magnitude

    @cached_property
    def sub_bucket_mask(self) -> int:
        return (2 * self.sub_bucket_half_count - 1) << self.unit_magnitude

    @cached_property
    def counts_len(self) -> int:
        smallest_untrackable = (2 * self.sub_bucket_half_count) << self.unit_magnitude
        buckets = 1
        while smallest_untrackable <= self.highest:
            smallest_untrackable <<= 1
            buckets += 1
        return (buckets + 1) * self.sub_bucket_half_count

    def index_of(self, values: np.ndarray) -> np.ndarray:
        """Bucket index of every value (int64 array, each in [0, highest])."""
        masked = values | self.sub_bucket_mask
        bit_length = (masked.astype(np.float64).view(np.int64) >> 52) - 1022
        bucket = bit_length - (self.unit_magnitude + self.sub_bucket_half_count_magnitude + 1)
        sub_bucket = values >> (bucket + self.unit_magnitude)
        return ((bucket + 1) << self.sub_bucket_half_count_magnitude) + sub_bucket \
            - self.sub_bucket_half_count

    def index_of_value(self, value: int) -> int:
        """`index_of` for one Python int (no numpy call overhead: percentile lookups use it)."""
        bucket = (value | self.sub_bucket_mask).bit_length() \
            - (self.unit_magnitude + self.sub_bucket_half_count_magnitude + 1)
        return ((bucket + 1) << self.sub_bucket_half_count_magnitude) \
            + (value >> (bucket + self.unit_magnitude)) - self.sub_bucket_half_count

    def highest_equivalent_value(self, index: int) -> int:
        """Largest value in bucket `index`, for one Python int (see `highest_equivalent`)."""
        bucket = (index >> self.sub_bucket_half_count_magnitude) - 1
        sub_bucket = (index & (self.sub_bucket_half_count - 1)) + self.sub_bucket_half_count
        if bucket < 0:
            bucket, sub_bucket = 0, sub_bucket - self.sub_bucket_half_count
        return ((sub_bucket + 1) << (bucket + self.unit_magnitude)) - 1

    def _bucket_of_index(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bucket = (index >> self.sub_bucket_half_count_magnitude) - 1
        sub_bucket = (index & (self.sub_bucket_half_count - 1)) + self.sub_bucket_half_count
        below = bucket < 0
        return np.where(below, 0, bucket), np.where(below, sub_bucket - self.sub_bucket_half_count,
                                                    sub_bucket)

    def lowest_equivalent(self, index: np.ndarray) -> np.ndarray:
        bucket, sub_bucket = self._bucket_of_index(np.asarray(index, dtype=np.int64))
        return sub_bucket << (bucket + self.unit_magnitude)

    def highest_equivalent(self, index: np.ndarray) -> np.ndarray:
        bucket, sub_bucket = self._bucket_of_index(np.asarray(index, dtype=np.int64))
        return (sub_bucket << (bucket + self.unit_magnitude)) \
            + (np.int64(1) << (bucket + self.unit_magnitude)) - 1


def percentile_ranks(percentiles, count: int) -> list[int]:
    """Nearest rank (1-based) of each percentile among `count` values; rounding noise removed."""
    return [min(max(math.ceil(round(p / 100.0 * count, 6)), 1), max(count, 1))
            for p in percentiles]


def exact_percentiles(values: np.ndarray, percentiles=PERCENTILES) -> list[int | None]:
    """Nearest-rank percentiles of raw values (None when there are none)."""
    if len(values) == 0:
        return [None] * len(percentiles)
    ranks = np.array(percentile_ranks(percentiles, len(values))) - 1
    ordered = np.partition(values, np.unique(ranks))
    return [int(value) for value in ordered[ranks]]


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


def _zigzag_tokens(counts: np.ndarray) -> np.ndarray:
    """Counts as V2 tokens: a count, or -N for a run of N >= 2 zeros (a lone zero stays 0)."""
    filled = np.flatnonzero(counts)
    counts = counts[:filled[-1] + 1] if len(filled) else counts[:0]
    zero = counts == 0
    starts = np.flatnonzero(zero & ~np.concatenate(([False], zero[:-1])))
    ends = np.flatnonzero(zero & ~np.concatenate((zero[1:], [False])))
    runs = ends - starts + 1
    tokens = counts.copy()
    tokens[starts] = np.where(runs > 1, -runs, 0)
    keep = ~zero
    keep[starts] = True
    tokens = tokens[keep]
    return ((tokens << 1) ^ (tokens >> 63)).astype(np.uint64)


def _leb128(values: np.ndarray) -> bytes:
    """LEB128 of unsigned 64-bit values, HdrHistogram flavour: the 9th byte carries 8 bits."""
    shifts = np.arange(9, dtype=np.uint64) * np.uint64(7)
    parts = (values[:, None] >> shifts[None, :]) & np.uint64(0x7F)
    parts[:, 8] = values >> np.uint64(56)
    lengths = 1 + (values[:, None] >= (np.uint64(1) << shifts[None, 1:])).sum(axis=1)
    position = np.arange(9)[None, :]
    more = position < (lengths[:, None] - 1)
    parts[:, :8] |= np.where(more[:, :8], np.uint64(0x80), np.uint64(0))
    return parts.astype(np.uint8)[position < lengths[:, None]].tobytes()


def encode_counts(config: HistogramConfig, counts: np.ndarray) -> bytes:
    """Compressed V2 bytes (before base64) of a counts array of `config`'s layout."""
    payload = _leb128(_zigzag_tokens(counts))
    header = _PAYLOAD_HEADER.pack(V2_ENCODING_COOKIE, len(payload), 0, config.significant_digits,
                                  config.lowest, config.highest, 1.0)
    compressed = zlib.compress(header + payload)
    return _COMPRESSED_HEADER.pack(V2_COMPRESSED_COOKIE, len(compressed)) + compressed


def _read_leb128(payload: bytes) -> np.ndarray:
    """Signed tokens from zigzag LEB128 bytes (counts below 2**62, i.e. every real histogram)."""
    raw = np.frombuffer(payload, dtype=np.uint8)
    if len(raw) == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(raw < 0x80)
    if len(ends) == 0 or ends[-1] != len(raw) - 1:
        raise HistogramError("encoded histogram ends inside a number")
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 9:
        raise HistogramError("encoded histogram holds a number longer than 9 bytes")
    position = np.arange(len(raw)) - np.repeat(starts, lengths)
    shifted = (raw & 0x7F).astype(np.uint64) << (position.astype(np.uint64) * np.uint64(7))
    zigzag = np.add.reduceat(shifted, starts)
    return (zigzag >> np.uint64(1)).astype(np.int64) ^ -(zigzag & np.uint64(1)).astype(np.int64)


def decode_counts(data: bytes) -> tuple[HistogramConfig, np.ndarray]:
    """(config, counts) from compressed V2 bytes; HistogramError names what is wrong."""
    if len(data) < _COMPRESSED_HEADER.size:
        raise HistogramError("encoded histogram is shorter than its header")
    cookie, length = _COMPRESSED_HEADER.unpack_from(data)
    if cookie & _COOKIE_BASE_MASK != V2_COMPRESSED_COOKIE & _COOKIE_BASE_MASK:
        raise HistogramError(f"not a compressed V2 histogram (cookie {cookie:#x})")
    try:
        inner = zlib.decompress(data[_COMPRESSED_HEADER.size:_COMPRESSED_HEADER.size + length])
    except zlib.error as error:
        raise HistogramError(f"encoded histogram does not inflate: {error}") from None
    if len(inner) < _PAYLOAD_HEADER.size:
        raise HistogramError("encoded histogram payload is shorter than its header")
    (cookie, payload_len, offset, digits, lowest, highest,
     _ratio) = _PAYLOAD_HEADER.unpack_from(inner)
    if cookie & _COOKIE_BASE_MASK != V2_ENCODING_COOKIE & _COOKIE_BASE_MASK:
        raise HistogramError(f"not a V2 histogram payload (cookie {cookie:#x})")
    if offset != 0:
        raise HistogramError("histograms with a normalizing index offset are not supported")
    try:
        config = HistogramConfig(int(lowest), int(highest), int(digits))
    except Exception as error:
        raise HistogramError(f"encoded histogram has an unusable configuration: {error}") from None
    tokens = _read_leb128(inner[_PAYLOAD_HEADER.size:_PAYLOAD_HEADER.size + payload_len])
    counts = np.repeat(np.maximum(tokens, 0), np.where(tokens < 0, -tokens, 1))
    if len(counts) > config.counts_len:
        raise HistogramError(f"encoded histogram has {len(counts)} buckets, its configuration "
                             f"allows {config.counts_len}")
    return config, counts


class IntervalLogWriter:
    """HdrHistogram interval log (format 1.3) on an open text file; the caller owns the file."""

    def __init__(self, out: TextIO, start_time_s: float, max_value_unit_ratio: float = 1e6):
        self.out = out
        self.start_time_s = start_time_s
        self.max_value_unit_ratio = max_value_unit_ratio  # ns -> ms for the Interval_Max column
        stamp = datetime.fromtimestamp(start_time_s, tz=timezone.utc).isoformat()
        out.write("#[Histogram log format version 1.3]\n"
                  f"#[StartTime: {start_time_s:.3f} (seconds since epoch), {stamp}]\n"
                  f"#[BaseTime: {start_time_s:.3f} (seconds since epoch)]\n"
                  '"StartTimestamp","Interval_Length","Interval_Max",'
                  '"Interval_Compressed_Histogram"\n')

    def write(self, tag: str, start_time_s: float, length_s: float, histogram: Histogram) -> None:
        """One interval; `start_time_s` is wall-clock seconds, written relative to BaseTime."""
        if not tag or any(char in tag for char in ", \n\t"):
            raise HistogramError(f"log tag {tag!r} must be non-empty without commas or spaces")
        maximum = (histogram.max or 0) / self.max_value_unit_ratio
        relative = max(start_time_s - self.start_time_s, 0.0)
        self.out.write(f"Tag={tag},{relative:.3f},{length_s:.3f},{maximum:.3f},"
                       f"{histogram.encode()}\n")


def read_interval_log(text: str) -> list[tuple[str | None, float, float, Histogram]]:
    """(tag, start_s relative to BaseTime, length_s, histogram) per interval line of a .hlog."""
    intervals = []
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith('"'):
            continue
        tag = None
        if line.startswith("Tag="):
            tag, line = line[4:].split(",", 1)
        fields = line.split(",")
        if len(fields) != 4:
            raise HistogramError(f"interval log line has {len(fields)} fields, expected 4: "
                                 f"{line[:60]!r}")
        intervals.append((tag, float(fields[0]), float(fields[1]), Histogram.decode(fields[3])))
    return intervals

