"""Two runs side by side: per sweep point and metric, the difference B - A with a confidence
interval when both runs repeated the point.

Trials are matched by their swept values (recipe trial.params); the repetitions of a point are
its samples. Each repetition gives one value per metric (throughput, goodput, error rate, and
p50/p99 of TTFT, ITL, TPOT, E2E from its exact statistics, TTFA (first answer token: TTFT
unless the answers carried reasoning), the server's prefix-cache hit ratio where it reports one (so a run
with prefix caching on and one with it off compare side by side), and GPU energy and output
tokens per joule where GPUs reported telemetry). The interval is Welch's t interval at
95 % for the difference of the two means (unequal variances), with the Welch-Satterthwaite
degrees of freedom rounded down (conservative). It needs at least two repetitions on each side
(recipe `repetitions: N`); with fewer, only the difference is shown. A change is called
significant when its interval excludes zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hpcbench.coordinator.report.exports import energy_figures, latency_stats
from hpcbench.coordinator.report.rundata import RunData

CONFIDENCE = 0.95
# two-sided 95 % quantiles of Student's t (0.975) by degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
         17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
         25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000,
         120: 1.980}
_Z975 = 1.960

# metric name -> (unit, higher is better)
COMPARED_METRICS: dict[str, tuple[str, bool]] = {
    "req_per_s": ("req/s", True),
    "output_tokens_per_s": ("tokens/s", True),
    "goodput_req_per_s": ("req/s", True),
    "error_rate": ("%", False),
    "energy_j": ("J", False),
    "output_tokens_per_joule": ("tokens/J", True),
    "prefix_cache_hit_ratio": ("%", True),
    **{f"{metric}_{key}": ("ms", False) for metric in ("ttft", "itl", "tpot", "e2e")
       for key in ("p50", "p99")},
    "ttfa_p50": ("ms", False), "ttfa_p99": ("ms", False),
}


@dataclass
class Difference:
    point: str
    metric: str
    unit: str
    a: list[float]          # one value per repetition
    b: list[float]
    higher_is_better: bool

    @property
    def mean_a(self) -> float:
        return float(np.mean(self.a)) if self.a else math.nan

    @property
    def mean_b(self) -> float:
        return float(np.mean(self.b)) if self.b else math.nan

    @property
    def delta(self) -> float:
        return self.mean_b - self.mean_a

    @property
    def relative(self) -> float | None:
        return self.delta / self.mean_a if self.mean_a else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return welch_interval(self.a, self.b)

    @property
    def verdict(self) -> str:
        """"better"/"worse" for B when the interval excludes 0, "no significant change" when it
        includes it, "" without an interval."""
        interval = self.interval
        if interval is None:
            return ""
        low, high = interval
        if low <= 0 <= high:
            return "no significant change"
        improved = (low > 0) == self.higher_is_better
        return "better" if improved else "worse"


@dataclass
class Comparison:
    run_a: RunData
    run_b: RunData
    differences: list[Difference]
    only_a: list[str]
    only_b: list[str]


def welch_interval(a: list[float], b: list[float]) -> tuple[float, float] | None:
    """95 % Welch t interval of mean(b) - mean(a); None with fewer than 2 values a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    var_a, var_b = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    delta = float(np.mean(b) - np.mean(a))
    spread = var_a + var_b
    if spread == 0:
        return delta, delta
    df = spread ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1))
    half = t_quantile(df) * math.sqrt(spread)
    return delta - half, delta + half


def t_quantile(df: float) -> float:
    """0.975 quantile of Student's t, df rounded down to the table (conservative)."""
    below = [known for known in _T975 if known <= max(df, 1)]
    return _T975[max(below)] if df < 121 else _Z975


def compare_runs(run_a: RunData, run_b: RunData) -> Comparison:
    points_a, points_b = _points(run_a), _points(run_b)
    differences = []
    for point in [key for key in points_a if key in points_b]:
        for metric, (unit, higher_is_better) in COMPARED_METRICS.items():
            values_a = _values(points_a[point], metric)
            values_b = _values(points_b[point], metric)
            if values_a or values_b:
                differences.append(Difference(point, metric, unit, values_a, values_b,
                                              higher_is_better))
    return Comparison(run_a, run_b, differences,
                      [key for key in points_a if key not in points_b],
                      [key for key in points_b if key not in points_a])


def _points(run: RunData) -> dict[str, list]:
    """Sweep point label ("concurrency=4", or "all" without a sweep) -> its trials."""
    points: dict[str, list] = {}
    for trial in run.trials:
        label = ", ".join(f"{name}={value}" for name, value in sorted(trial.params.items()))
        points.setdefault(label or "all", []).append(trial)
    return points


def _values(trials: list, metric: str) -> list[float]:
    values = []
    for trial in trials:
        overall = trial.summary["overall"]
        figures = {**overall, **energy_figures(trial)}
        if metric == "error_rate":
            value = 100 * overall["error_total"] / overall["requests"] \
                if overall.get("requests") else None
        elif metric == "prefix_cache_hit_ratio":
            ratio = ((trial.summary.get("server") or {}).get("derived") or {}).get(metric)
            value = None if ratio is None else 100 * ratio
        elif metric in figures:
            value = figures[metric]
        else:
            latency, key = metric.rsplit("_", 1)
            value = (latency_stats(trial).get(latency) or {}).get(key)
        if value is not None:
            values.append(float(value))
    return values
