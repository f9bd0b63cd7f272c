"""HDR histogram: accuracy against exact percentiles, merging, and the standard V2 encoding,
checked against the independent `hdrhistogram` package (pure Python HdrHistogram port)."""
import io

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.measure.buckets import HistogramConfig, HistogramError
from hpcbench.common.measure.histogram import Histogram
from hpcbench.common.measure.interval_log import IntervalLogWriter, read_interval_log
from hpcbench.common.measure.percentiles import PERCENTILES, exact_percentiles

CONFIG = HistogramConfig()  # 1 µs .. 1 h, 3 significant digits


def skewed(name: str, n: int = 200_000) -> np.ndarray:
    rng = np.random.default_rng(7)
    if name == "lognormal":   # latency-like, long right tail
        values = rng.lognormal(mean=15, sigma=1.5, size=n)
    elif name == "pareto":    # very heavy tail: a few requests take minutes
        values = (rng.pareto(1.2, size=n) + 1) * 2e5
    else:                     # bimodal: cache hits in µs, misses in seconds
        values = np.where(rng.random(n) < 0.9, rng.normal(5e4, 1e4, n), rng.normal(2e9, 3e8, n))
    return np.clip(values, 0, CONFIG.highest).astype(np.int64)


@pytest.mark.parametrize("distribution", ["lognormal", "pareto", "bimodal"])
def test_percentiles_within_a_tenth_of_a_percent_of_exact(distribution):
    values = skewed(distribution)
    histogram = Histogram(CONFIG)
    histogram.record_many(values)
    exact = exact_percentiles(values, PERCENTILES + (100.0,))
    approximate = histogram.percentiles(PERCENTILES + (100.0,))
    for percentile, hdr, truth in zip(PERCENTILES + (100.0,), approximate, exact):
        # values below the 1 µs resolution are exact to one unit (512 ns) instead
        assert abs(hdr - truth) <= max(truth * 0.001, 512), (percentile, hdr, truth)
    assert histogram.count == len(values)
    assert histogram.max == values.max() and histogram.min == values.min()
    assert histogram.mean == pytest.approx(values.mean(), rel=1e-9)


def test_exact_percentiles_use_nearest_rank():
    values = np.arange(1, 1001, dtype=np.int64)[::-1].copy()
    assert exact_percentiles(values, (50, 99, 99.9, 100)) == [500, 990, 999, 1000]
    assert exact_percentiles(np.zeros(0, np.int64), (50,)) == [None]


def test_bucket_layout_matches_the_reference_implementation():
    values = skewed("lognormal", 5_000)
    reference = HdrHistogram(CONFIG.lowest, CONFIG.highest, CONFIG.significant_digits)
    for value in values.tolist():
        reference.record_value(value)
    ours = Histogram(CONFIG)
    ours.record_many(values)
    assert reference.counts_len == CONFIG.counts_len
    assert np.array_equal(np.array(reference.counts[:reference.counts_len]), ours.counts)


def test_encoding_round_trips_and_reads_in_the_reference_implementation():
    values = skewed("bimodal", 50_000)
    ours = Histogram(CONFIG)
    ours.record_many(values)
    encoded = ours.encode()
    assert encoded.startswith("HISTF")  # base64 of the compressed V2 cookie 0x1c849314

    decoded = Histogram.decode(encoded)
    assert decoded.config == CONFIG
    assert np.array_equal(decoded.counts, ours.counts)
    assert decoded.count == ours.count

    reference = HdrHistogram.decode(encoded)
    assert reference.get_total_count() == ours.count
    for percentile in PERCENTILES:
        assert reference.get_value_at_percentile(percentile) == decoded.percentile(percentile)


def test_decodes_what_the_reference_implementation_encodes():
    reference = HdrHistogram(CONFIG.lowest, CONFIG.highest, CONFIG.significant_digits)
    values = skewed("pareto", 3_000)
    for value in values.tolist():
        reference.record_value(value)
    ours = Histogram(CONFIG)
    ours.record_many(values)
    assert np.array_equal(Histogram.decode(reference.encode()).counts, ours.counts)


def test_large_counts_survive_encoding():
    histogram = Histogram(CONFIG)
    histogram.counts[[0, 5, 9000]] = [1, 2**40 + 3, 2**55 + 1]  # 6- and 8-byte varints
    histogram.count = int(histogram.counts.sum())
    assert np.array_equal(Histogram.decode(histogram.encode()).counts, histogram.counts)


def test_merge_equals_recording_everything_in_one():
    values = skewed("lognormal", 20_000)
    whole, first, second = Histogram(CONFIG), Histogram(CONFIG), Histogram(CONFIG)
    whole.record_many(values)
    first.record_many(values[:7_000])
    second.record_many(values[7_000:])
    first.merge(second)
    assert np.array_equal(first.counts, whole.counts)
    assert (first.count, first.min, first.max) == (whole.count, whole.min, whole.max)
    assert first.percentiles() == whole.percentiles()
    with pytest.raises(HistogramError):
        first.merge(Histogram(HistogramConfig(significant_digits=2)))


def test_out_of_range_values_are_counted_not_hidden():
    histogram = Histogram(CONFIG)
    histogram.record_many(np.array([-5, 10_000, CONFIG.highest * 2], dtype=np.int64))
    assert histogram.rejected == 1 and histogram.clamped == 1 and histogram.count == 2
    assert histogram.max == CONFIG.highest * 2  # the true maximum is still reported
    histogram.reset()
    assert histogram.count == 0 and histogram.percentile(50) is None and histogram.max is None


def test_small_and_bulk_recording_agree():
    values = skewed("lognormal", 100)
    one_by_one, bulk = Histogram(CONFIG), Histogram(CONFIG)
    for value in values:
        one_by_one.record_many(np.array([value]))
    bulk.record_many(values)
    assert np.array_equal(one_by_one.counts, bulk.counts)


@pytest.mark.parametrize("garbage", ["", "SGVsbG8=", "HISTFAAAAAAAAAA", "not base64 at all!"])
def test_corrupt_encodings_raise_a_histogram_error(garbage):
    with pytest.raises((HistogramError, ValueError)):
        Histogram.decode(garbage)


def test_configuration_accepts_whole_floats():
    assert HistogramConfig(lowest=1e3, highest=3_600e9) == CONFIG


def test_bad_configuration_names_the_field():
    with pytest.raises(HpcbenchError) as raised:
        HistogramConfig(significant_digits=7)
    assert raised.value.code == "E006" and "significant_digits" in raised.value.message
    with pytest.raises(HpcbenchError, match="highest"):
        HistogramConfig(lowest=1000, highest=1500)


def test_interval_log_is_readable_by_the_reference_log_reader(tmp_path):
    path = tmp_path / "histograms.hlog"
    start = 1_700_000_000.0
    histograms = []
    with open(path, "w") as out:
        log = IntervalLogWriter(out, start)
        for interval in range(3):
            histogram = Histogram(CONFIG)
            histogram.record_many(skewed("lognormal", 1_000) + interval * 1_000_000)
            histograms.append(histogram)
            log.write("ttft", start + interval, 1.0, histogram)

    ours = read_interval_log(path.read_text())
    assert [(tag, start_s, length) for tag, start_s, length, _ in ours] == \
        [("ttft", 0.0, 1.0), ("ttft", 1.0, 1.0), ("ttft", 2.0, 1.0)]
    assert [h.count for *_, h in ours] == [1_000] * 3

    reader = HistogramLogReader(str(path), HdrHistogram(CONFIG.lowest, CONFIG.highest, 3))
    for expected in histograms:
        interval = reader.get_next_interval_histogram()
        assert interval.get_tag() == "ttft"
        assert interval.get_total_count() == expected.count
        assert abs(interval.get_value_at_percentile(99) - expected.percentile(99)) <= \
            expected.percentile(99) * 0.001
    assert reader.get_next_interval_histogram() is None
    with pytest.raises(HistogramError):
        IntervalLogWriter(io.StringIO(), start).write("bad tag", start, 1.0, histograms[0])
