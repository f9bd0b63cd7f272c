"""A probe's verdict: percentiles against limits, pooled runs, the error ceiling, closeness;
and the confidence interval of a percentile read off an HDR histogram."""
from __future__ import annotations

import numpy as np
import pytest

from hpcbench.common.measure.histogram import Histogram
from hpcbench.common.measure.percentile_interval import percentile_interval
from hpcbench.coordinator.session.probe_verdict import judge_load

MS = 1_000_000


def histogram(values_ms) -> Histogram:
    made = Histogram()
    made.record_many((np.asarray(values_ms, dtype=float) * MS).astype(np.int64))
    return made


def settings(**slo) -> dict:
    return {"slo": {metric: {"percentile": p, "max": limit_ms / 1e3}
                    for metric, (p, limit_ms) in slo.items()},
            "max_error_rate": 0.01, "confidence": 0.95}


def run(requests=1000, errors=0, **values_ms) -> tuple[dict, dict]:
    return ({"requests": requests, "error_total": errors},
            {metric: histogram(values) for metric, values in values_ms.items()})


UNIFORM = np.arange(1, 1001)   # 1..1000 ms: p50 = 500 ms, p99 = 990 ms


def test_a_load_meets_when_every_percentile_is_within_its_limit_and_errors_too():
    verdict = judge_load(settings(ttft=(99, 1200), itl=(50, 800)),
                         [run(ttft=UNIFORM, itl=UNIFORM)])
    assert verdict["meets"] and not verdict["close"]
    itl = next(check for check in verdict["checks"] if check["metric"] == "itl")
    assert itl["value_ms"] == pytest.approx(500, rel=1e-3)
    low, high = itl["interval_ms"]
    assert low < 500 < high < 800


def test_a_percentile_over_its_limit_misses():
    verdict = judge_load(settings(ttft=(99, 900)), [run(ttft=UNIFORM)])
    assert not verdict["meets"] and not verdict["close"]
    assert verdict["checks"][0]["value_ms"] == pytest.approx(990, rel=1e-3)


def test_a_limit_inside_the_confidence_interval_is_close_either_way():
    meets = judge_load(settings(itl=(50, 510)), [run(itl=UNIFORM)])
    misses = judge_load(settings(itl=(50, 495)), [run(itl=UNIFORM)])
    assert (meets["meets"], meets["close"]) == (True, True)
    assert (misses["meets"], misses["close"]) == (False, True)
    # a miss that another check misses clearly is not close: more samples cannot save it
    clear = judge_load(settings(itl=(50, 495), ttft=(99, 100)), [run(itl=UNIFORM, ttft=UNIFORM)])
    assert (clear["meets"], clear["close"]) == (False, False)


def test_runs_of_a_load_are_pooled():
    # alone, each run's p50 is far from the other's; pooled, the percentile of all samples
    slow, fast = np.full(500, 900.0), np.full(500, 100.0)
    pooled = judge_load(settings(itl=(25, 150)), [run(500, itl=slow), run(500, itl=fast)])
    assert pooled["checks"][0]["samples"] == 1000
    assert pooled["checks"][0]["value_ms"] == pytest.approx(100, rel=1e-3)
    assert pooled["requests"] == 1000 and pooled["meets"]


def test_the_error_ceiling_is_a_point_comparison():
    within = judge_load(settings(itl=(50, 800)), [run(requests=1000, errors=10, itl=UNIFORM)])
    over = judge_load(settings(itl=(50, 800)), [run(requests=1000, errors=11, itl=UNIFORM)])
    assert within["meets"] and within["error_rate"] == 0.01
    assert not over["meets"] and not over["close"] and not over["errors_ok"]


def test_a_metric_without_samples_misses_and_says_so():
    verdict = judge_load(settings(tpot=(50, 100)), [run(ttft=UNIFORM)])
    assert not verdict["meets"]
    assert verdict["checks"][0]["value_ms"] is None and verdict["checks"][0]["samples"] == 0
    nothing = judge_load({**settings(), "slo": {}}, [run(requests=0)])
    assert not nothing["meets"] and nothing["error_rate"] is None


def test_the_interval_covers_the_true_percentile_at_its_confidence():
    """Of many samples of an exponential distribution, the 95 % interval of p99 misses the true
    quantile in about 5 % of draws (the order-statistic interval is slightly conservative)."""
    rng = np.random.default_rng(7)
    true_p99 = -np.log(0.01) * 50.0   # exponential, mean 50 ms
    misses = 0
    draws = 400
    for _ in range(draws):
        low, high = percentile_interval(histogram(rng.exponential(50.0, 800)), 99, 0.95)
        misses += not (low <= true_p99 * MS <= high)
    assert misses / draws < 0.09
    wider = percentile_interval(histogram(rng.exponential(50.0, 800)), 99, 0.999)
    narrower = percentile_interval(histogram(rng.exponential(50.0, 800)), 99, 0.5)
    assert wider[1] - wider[0] > narrower[1] - narrower[0]


def test_too_few_samples_leave_a_high_percentile_unbounded_above_and_close():
    assert percentile_interval(Histogram(), 99, 0.95) is None
    # 2 samples: P(both below the true p99) = 0.98, so the larger one bounds it from below
    # only, and nothing bounds it from above
    low, high = percentile_interval(histogram([5.0, 7.0]), 99, 0.95)
    assert low == pytest.approx(7 * MS, rel=1e-3) and high is None
    # 0.99^368 < 2.5 % < 0.99^367: from 368 samples on, the largest bounds p99 from above
    assert percentile_interval(histogram(UNIFORM[:367]), 99, 0.95)[1] is None
    assert percentile_interval(histogram(UNIFORM[:368]), 99, 0.95)[1] is not None
    verdict = judge_load(settings(ttft=(99, 500)), [run(requests=20, ttft=np.full(20, 7.0))])
    assert verdict["meets"] and verdict["close"]
    assert verdict["checks"][0]["interval_ms"][1] is None
