"""The percentile method every hpcbench figure uses: nearest rank.

The p-th percentile is the smallest value with at least p % of the values at or below it, the
same definition as HdrHistogram's. `exact_percentiles` applies it to raw samples and a
`Histogram` to its buckets, so an HDR percentile and an exact one differ only by the bucket
width; no figure is ever interpolated.
"""
from __future__ import annotations

import math

import numpy as np

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


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
