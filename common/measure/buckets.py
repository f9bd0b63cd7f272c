"""The HDR bucket layout: which values share a bucket, for one histogram configuration.

The layout is HdrHistogram's (Gil Tene's), so counts laid out here decode in any HdrHistogram
implementation (Java, C, Go, Python `hdrhistogram`) and vice versa: values below
2 * 10**significant_digits units sit in buckets one unit wide, where a unit is the largest power
of two not above `lowest`; above that every power of two of range is split into
`sub_bucket_half_count` equal buckets, so the relative error of any value is below
1 / sub_bucket_half_count (0.098 % at 3 significant digits). `index_of` computes the bucket of a
whole numpy array at once (float64 exponent bits give the bit length): no Python call per value.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hpcbench.common.errors import config_error

_MAX_EXACT_FLOAT = 1 << 53  # bit lengths come from float64 exponents: exact below this


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
