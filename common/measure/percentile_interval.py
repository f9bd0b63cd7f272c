"""A distribution-free confidence interval for a nearest-rank percentile, from a histogram.

Of n independent samples, the number at or below the true p-quantile is Binomial(n, p); so
the order statistics X(l) and X(u), with l the alpha/2 quantile of that binomial and u one
above its 1 - alpha/2 quantile, enclose the true quantile with probability at least about
1 - alpha, whatever the latency distribution (the classic order-statistic interval; no
bootstrap resampling needed, and it reads straight off the merged HDR histogram). Latency
samples of one trial are not strictly independent (a slow server step delays many requests at
once), so the interval is a lower bound on the real uncertainty, not an overstatement of it.
"""
from __future__ import annotations

from scipy.stats import binom

from hpcbench.common.measure.histogram import Histogram


def percentile_interval(histogram: Histogram, percentile: float,
                        confidence: float) -> tuple[int, int | None] | None:
    """(low, high) in the histogram's unit bounding its `percentile` with `confidence`;
    None for an empty histogram. `low` is 0 and `high` None (unbounded) where the samples are
    too few to bound that side: a p99 needs about 370 samples before even their largest
    bounds it from above at 95 % (0.99^n <= 2.5 %)."""
    count = histogram.count
    if count == 0:
        return None
    share, alpha = percentile / 100.0, 1.0 - confidence
    low_rank = int(binom.ppf(alpha / 2, count, share))   # P(below X(l)) <= alpha / 2
    high_rank = int(binom.ppf(1 - alpha / 2, count, share)) + 1
    low = histogram.percentile(100.0 * low_rank / count) if low_rank >= 1 else 0
    high = histogram.percentile(100.0 * high_rank / count) if high_rank <= count else None
    return low, high
