"""Histogram mode: a sample batch summarised at its source, and a summary checked for merging.

An executor at scale sends, instead of a batch's rows, what the aggregator would have made of
them (proto/samples.py `SampleSummary`): the same `definitions.derive` metric values as bucket
counts of the run's histogram configuration, with every counter. Bucket counts add exactly, so
the merged histograms equal the ones the raw rows would have given, and live percentiles match
the exact ones from the raw file within the configuration's precision.
"""
from __future__ import annotations

import numpy as np

from hpcbench.common.measure import definitions
from hpcbench.common.measure.buckets import HistogramConfig
from hpcbench.common.measure.histogram import Recording
from hpcbench.proto.samples import (
    COUNT_FIELDS,
    MetricBuckets,
    SampleBatch,
    SampleBatchError,
    SampleSummary,
)


def summarise(batch: SampleBatch, config: HistogramConfig, slos_ns: dict[str, int],
              queue_threshold_ns: int = definitions.DEFAULT_QUEUE_THRESHOLD_NS,
              unstored: str = "") -> SampleSummary:
    """The summary of one batch (same header and sequence number); `unstored`: why its raw
    rows could not be kept on the node, if they could not."""
    derived = definitions.derive(batch, slos_ns, queue_threshold_ns)
    return SampleSummary(
        run=batch.run, trial=batch.trial, executor=batch.executor, node=batch.node,
        seq=batch.seq, interval=batch.interval, epoch_ns=batch.epoch_ns, n=batch.n,
        samples=batch.n + len(batch.itl_ns),
        hdr=(config.lowest, config.highest, config.significant_digits),
        counts={name: getattr(derived, name) for name in COUNT_FIELDS},
        errors=derived.errors, token_sources=derived.token_sources,
        first_ns=derived.first_ns, last_ns=derived.last_ns, unstored=unstored,
        metrics={name: _buckets(Recording.of(config, values))
                 for name, values in derived.values.items() if len(values)})


def _buckets(recording: Recording) -> MetricBuckets:
    if recording.dense is not None:
        indices = np.flatnonzero(recording.dense)
        counts = recording.dense[indices]
    elif recording.indices is not None:
        indices, counts = np.unique(recording.indices, return_counts=True)
    else:    # only rejected (negative) values
        indices = counts = np.zeros(0, dtype=np.int64)
    return MetricBuckets(count=recording.count, total=recording.total, min=recording.min,
                         max=recording.max, clamped=recording.clamped,
                         rejected=recording.rejected, indices=indices, counts=counts)


def check_summary(summary: SampleSummary, config: HistogramConfig) -> None:
    """What the wire contract cannot check alone: the sender's histogram configuration is the
    run's, its metrics are known ones and its bucket indices lie within the configuration."""
    ours = (config.lowest, config.highest, config.significant_digits)
    if summary.hdr != ours:
        raise SampleBatchError(f"summary histograms use configuration {list(summary.hdr)}, "
                               f"this run uses {list(ours)}")
    for name, buckets in summary.metrics.items():
        if name not in definitions.METRICS:
            raise SampleBatchError(f"summary metric {name!r} is not one of "
                                   f"{definitions.METRICS}")
        if len(buckets.indices) and int(buckets.indices[-1]) >= config.counts_len:
            raise SampleBatchError(f"summary metric {name!r} has bucket index "
                                   f"{int(buckets.indices[-1])}, the configuration has "
                                   f"{config.counts_len}")


def batch_metrics(summary: SampleSummary) -> definitions.BatchMetrics:
    """The summary's counters in the form a MetricSet adds (no raw values)."""
    return definitions.BatchMetrics(
        values={}, errors=summary.errors, token_sources=summary.token_sources,
        first_ns=summary.first_ns, last_ns=summary.last_ns, **summary.counts)
