"""Latency histograms of the coordinator's Prometheus endpoint: fixed `le` buckets counted from
the aggregator's HDR histograms, consistent with the summaries and with the raw values."""
from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hpcbench.common.measure.histogram import Histogram
from hpcbench.common.measure.statistics import LATENCY_BUCKETS_S
from hpcbench.coordinator.bus.prometheus import SessionCollector
from hpcbench.coordinator.ingest.aggregator import Aggregator
from tests.support.known_inputs import CHUNKS, sample_batch

HISTOGRAM = "hpcbench_request_latency_seconds"


def exposition(collector: SessionCollector) -> dict:
    registry = CollectorRegistry()
    registry.register(collector)
    return {family.name: family
            for family in text_string_to_metric_families(generate_latest(registry).decode())}


def histogram_of(families: dict, metric: str) -> tuple[list[tuple[float, float]], float, float]:
    """([(le, cumulative count)], _count, _sum) of one metric of the histogram family."""
    samples = [sample for sample in families[HISTOGRAM].samples
               if sample.labels["metric"] == metric]
    buckets = [(float(sample.labels["le"]), sample.value) for sample in samples
               if sample.name.endswith("_bucket")]
    total = {sample.name.rsplit("_", 1)[1]: sample.value for sample in samples
             if not sample.name.endswith("_bucket")}
    return buckets, total["count"], total["sum"]


def test_bucket_counts_match_raw_values_at_the_histograms_resolution():
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.lognormal(np.log(50e6), 1.0, 20_000).astype(np.int64),
                             [100_000_000, 250_000_000]])          # values equal to bounds
    histogram = Histogram()
    histogram.record_many(values)
    bounds = [round(bound * 1e9) for bound in LATENCY_BUCKETS_S["ttft"]]
    for bound, count in zip(bounds, histogram.counts_at_or_below(bounds)):
        # inclusive like `le`; a bucket straddling the bound may add values < 0.1 % above it
        assert (values <= bound).sum() <= count <= (values <= bound * 1.001).sum(), bound
    assert Histogram().counts_at_or_below(bounds) == [0] * len(bounds)


def test_histograms_agree_with_the_summaries_and_the_requests_measured():
    aggregator = Aggregator(run_id="run-c", interval_s=1.0)
    aggregator.open_trial("trial-1")
    collector = SessionCollector()
    previous: dict[str, list[float]] = {}
    for seq in range(2):
        aggregator.ingest(sample_batch(seq, n=20, timeouts=1))   # TTFT 100 ms, ITL 20 ms
        collector.update_snapshot(aggregator.snapshot())
        families = exposition(collector)
        assert families[HISTOGRAM].type == "histogram"
        assert {sample.labels["metric"] for sample in families[HISTOGRAM].samples} == \
            set(LATENCY_BUCKETS_S)
        summary_counts = {sample.labels["metric"]: sample.value
                          for sample in families["hpcbench_latency_seconds"].samples
                          if sample.name.endswith("_count")}
        summary_sums = {sample.labels["metric"]: sample.value
                        for sample in families["hpcbench_latency_seconds"].samples
                        if sample.name.endswith("_sum")}
        for metric, bounds in LATENCY_BUCKETS_S.items():
            buckets, count, total = histogram_of(families, metric)
            assert [le for le, _ in buckets] == [*bounds, float("inf")]
            counts = [value for _, value in buckets]
            assert counts == sorted(counts), (metric, counts)           # cumulative
            assert counts[-1] == count == summary_counts[metric]
            assert total == pytest.approx(summary_sums[metric])
            assert all(now >= before for now, before in zip(counts, previous.get(metric, counts)))
            previous[metric] = counts
        measured = 19 * (seq + 1)                       # successful requests so far
        ttft, ttft_count, _ = histogram_of(families, "ttft")
        assert ttft_count == measured
        assert dict(ttft)[0.08] == 0 and dict(ttft)[0.1] == measured    # all exactly 100 ms
        itl, itl_count, _ = histogram_of(families, "itl")
        assert itl_count == measured * (CHUNKS - 1)
        assert dict(itl)[0.01] == 0 and dict(itl)[0.025] == itl_count   # all 20 ms
