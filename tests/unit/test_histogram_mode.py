"""Histogram mode: summaries from the edge merge into the same statistics as raw batches.

The aggregator is fed the same batches twice, once raw and once as the summaries executors
send in histogram mode (common/measure/summaries.py, proto/samples.py); counts, errors, tokens
and histograms must agree exactly, live percentiles must match the exact ones from the raw rows
within the configuration's precision, accounting (duplicates, gaps, foreign senders, unstored
rows) must mean the same, and bad summaries are counted, never raised.
"""
from pathlib import Path

import msgpack
import numpy as np
import pytest

from hpcbench.common.measure.buckets import HistogramConfig
from hpcbench.common.measure.definitions import derive
from hpcbench.common.measure.histogram import Histogram, Recording
from hpcbench.common.measure.percentiles import PERCENTILES
from hpcbench.common.measure.sparse_histogram import SparseHistogram
from hpcbench.common.measure.statistics import PERCENTILE_KEYS, exact_stats
from hpcbench.common.measure.summaries import summarise
from hpcbench.coordinator.ingest.aggregator import EXECUTOR_DETAIL_PER_SNAPSHOT, Aggregator
from hpcbench.coordinator.session.recording import SessionRecording
from hpcbench.coordinator.session.results import ResultsWriter, read_samples
from hpcbench.coordinator.session.sample_mode import aggregation_mode
from hpcbench.executor.node_samples import NodeSamples
from hpcbench.proto import samples
from hpcbench.proto.samples import ErrorClass, Phase
from hpcbench.recipes import expand_trials, recipe_from_dict
from tests.support.sample_batches import make_batch

RUN = "run-1"
CONFIG = HistogramConfig()
SLOS_S = {"ttft": 0.05, "itl": 0.004}


def bucket_width_ms(value_ms: float) -> float:
    """The histogram's precision at a value: its bucket's width (1/1024 of the value above
    2048 units of 512 ns at 3 significant digits, one unit below; buckets.py)."""
    index = CONFIG.index_of(np.array([round(value_ms * 1e6)], dtype=np.int64))
    return float(CONFIG.highest_equivalent(index)[0] - CONFIG.lowest_equivalent(index)[0] + 1) / 1e6


def _batches():
    batches = []
    for executor in range(3):
        for seq in range(4):
            errors = {5: ErrorClass.TIMEOUT, 7: ErrorClass.HTTP_STATUS} if seq == 1 else None
            phase = Phase.WARMUP if seq == 0 else Phase.MEASURED
            batch = make_batch(seq, 150, run=RUN, executor=f"exec-{executor}", phase=phase,
                               errors=errors, seed=executor * 100 + seq, chunks=5 + executor)
            cols = batch.columns     # every other answered row reasons for two tokens first
            thinking = (np.arange(batch.n) % 2 == 0) & (cols["first_ns"] > 0)
            cols["first_reasoning_ns"][thinking] = cols["first_ns"][thinking]
            cols["first_answer_ns"][:] = np.where(thinking, cols["first_ns"] + 2_000_000,
                                                  cols["first_ns"])
            cols["reasoning_tokens"][thinking] = 2
            batches.append(batch)
    return batches


def _summary_bytes(batch, unstored=""):
    return samples.encode_summary(summarise(batch, CONFIG, {name: round(value * 1e9)
                                                            for name, value in SLOS_S.items()},
                                            unstored=unstored))


def _aggregate(payloads):
    aggregator = Aggregator(CONFIG, run_id=RUN)
    aggregator.open_trial("t1", SLOS_S)
    for payload in payloads:
        assert aggregator.ingest(payload)
    aggregator.snapshot()
    return aggregator, aggregator.close_trial("t1")


def test_summaries_merge_into_the_statistics_raw_batches_give():
    batches = _batches()
    _, raw = _aggregate([samples.encode(batch) for batch in batches])
    _, merged = _aggregate([_summary_bytes(batch) for batch in batches])

    assert merged.overall == raw.overall          # counts, errors, tokens, goodput, latency
    assert merged.executors == raw.executors
    for name, histogram in raw.histograms.items():
        assert np.array_equal(merged.histograms[name].counts, histogram.counts)
    assert merged.overall["errors"] == {"http_status": 3, "timeout": 3}
    assert merged.overall["warmup_requests"] == 450
    assert merged.overall["reasoning_tokens"] > 0 and merged.overall["latency"]["ttfr"]["count"]
    assert merged.integrity["batches"] == raw.integrity["batches"] == 12
    assert merged.integrity["samples"] == raw.integrity["samples"]
    assert merged.integrity["summary_batches"] == 12


def test_live_percentiles_equal_the_exact_ones_within_the_histogram_precision():
    batches = _batches()
    aggregator = Aggregator(CONFIG, run_id=RUN)
    aggregator.open_trial("t1", SLOS_S)
    for batch in batches:
        aggregator.ingest(_summary_bytes(batch))
    live = aggregator.snapshot()["cumulative"]["latency"]
    slos_ns = {name: round(value * 1e9) for name, value in SLOS_S.items()}
    for name in ("ttft", "itl", "tpot", "e2e", "dispatch_lag", "ttfr", "ttfa"):
        values = np.concatenate([derive(batch, slos_ns).values[name] for batch in batches])
        exact = exact_stats(values)
        assert live[name]["count"] == exact["count"] > 0
        assert live[name]["min"] == exact["min"] and live[name]["max"] == exact["max"]
        assert live[name]["mean"] == pytest.approx(exact["mean"], rel=1e-12)
        for key in PERCENTILE_KEYS:
            assert abs(live[name][key] - exact[key]) <= bucket_width_ms(exact[key]), (name, key)


def test_accounting_means_the_same_for_summaries():
    aggregator = Aggregator(CONFIG, run_id=RUN, admitted_only=True)
    aggregator.open_trial("t1", SLOS_S)
    aggregator.admit_executors(["exec-0"])
    first, third = make_batch(0, 50, run=RUN), make_batch(2, 50, run=RUN)
    assert aggregator.ingest(_summary_bytes(first))
    assert not aggregator.ingest(_summary_bytes(first))            # duplicate: counted once
    assert aggregator.ingest(_summary_bytes(third))                 # seq 1 missing
    stranger = make_batch(0, 30, run=RUN, executor="stranger")
    assert not aggregator.ingest(_summary_bytes(stranger))
    other_run = make_batch(0, 30, run="run-2")
    assert not aggregator.ingest(_summary_bytes(other_run))
    unstored = make_batch(3, 20, run=RUN)
    assert aggregator.ingest(_summary_bytes(unstored, unstored="disk full"))

    integrity = aggregator.integrity()
    assert integrity["duplicate_batches"] == 1 and integrity["missing_batches"] == 1
    assert integrity["foreign_batches"] == 1 and integrity["foreign_requests"] == 30
    assert integrity["wrong_run_batches"] == 1
    assert integrity["unstored_batches"] == 1 and integrity["unstored_requests"] == 20
    assert aggregator.batches_received("exec-0") == 3
    assert aggregator.close_trial("t1").overall["requests"] == 120

    assert not aggregator.ingest(_summary_bytes(make_batch(4, 10, run=RUN)))
    assert aggregator.integrity()["after_close_requests"] == 10


def _message(batch):
    return msgpack.unpackb(_summary_bytes(batch), raw=False)


def _bad_summaries():
    batch = make_batch(0, 40, run=RUN)
    other_config = samples.encode_summary(summarise(batch, HistogramConfig(significant_digits=2),
                                                    {}))
    yield "configuration", other_config
    message = _message(batch)
    message["metrics"]["nonsense"] = message["metrics"].pop("ttft")
    yield "not one of", msgpack.packb(message)
    message = _message(batch)
    message["metrics"]["ttft"]["idx"] = np.array([CONFIG.counts_len], "<u4").tobytes()
    message["metrics"]["ttft"]["cnt"] = np.array([40], "<i8").tobytes()
    yield "bucket index", msgpack.packb(message)
    message = _message(batch)
    message["metrics"]["ttft"]["count"] += 1
    yield "buckets hold", msgpack.packb(message)
    message = _message(batch)
    idx = np.frombuffer(message["metrics"]["itl"]["idx"], "<u4")[::-1].copy()
    message["metrics"]["itl"]["idx"] = idx.tobytes()
    yield "strictly increasing", msgpack.packb(message)
    message = _message(batch)
    message["errors"] = b"\x00" * 3
    yield "errors", msgpack.packb(message)
    message = _message(batch)
    del message["counts"]["good"]
    yield "counts", msgpack.packb(message)
    message = _message(batch)
    message["seq"] = -1
    yield "seq", msgpack.packb(message)


@pytest.mark.parametrize("reason,payload", list(_bad_summaries()),
                         ids=lambda value: value if isinstance(value, str) else "")
def test_a_bad_summary_is_counted_with_its_reason(reason, payload):
    aggregator = Aggregator(CONFIG, run_id=RUN)
    assert not aggregator.ingest(payload)
    assert aggregator.malformed == 1 and aggregator.batches == 0
    assert reason in aggregator.problems[-1]


def test_raw_rows_kept_on_the_node_are_gathered_into_the_trial_samples(tmp_path):
    writer = ResultsWriter(tmp_path, "scale", "s1").open_trial("t1", {"workload": {}})
    aggregator = Aggregator(CONFIG, run_id=RUN)
    aggregator.open_trial("t1", SLOS_S, sink=writer)
    kept, lost = NodeSamples(writer.raw_file_for("exec-0"), SLOS_S), \
        NodeSamples(writer.raw_file_for("exec-1"), SLOS_S)
    batches = {name: [make_batch(seq, 60, run=RUN, executor=name) for seq in range(3)]
               for name in ("exec-0", "exec-1")}
    for name, node in (("exec-0", kept), ("exec-1", lost)):
        for batch in batches[name]:
            assert aggregator.ingest(node.encode(batch))
    kept.close()
    assert writer.raw_file_for("exec-0").is_file()            # complete: renamed from .partial
    # exec-1 never finishes its file (its node died): the rows it claimed count as unstored
    aggregator.raw_files_lost("t1", writer.gather_executor_samples(["exec-0", "exec-1"]))
    summary = aggregator.close_trial("t1")

    assert summary.integrity["unstored_batches"] == 3
    assert summary.integrity["unstored_requests"] == 180
    assert "exec-1" in summary.integrity["recent_problems"][-1]
    assert summary.exact["ttft"]["count"] == 180                # exec-0's rows, read back
    assert summary.executors["exec-0"]["latency"]["ttft"]["count"] == 180
    assert not writer.raw_file_for("exec-0").exists()          # moved into samples.msgpack
    stored = [batch.seq for batch in writer.read_batches()]
    assert stored == [0, 1, 2]


def test_snapshots_show_a_bounded_number_of_executors_in_turns():
    executors = 3 * EXECUTOR_DETAIL_PER_SNAPSHOT + 5
    aggregator = Aggregator(CONFIG, run_id=RUN)
    aggregator.open_trial("t1", SLOS_S)
    for index in range(executors):
        aggregator.ingest(_summary_bytes(make_batch(0, 10, run=RUN, executor=f"e{index}")))
    seen: set[str] = set()
    turns = -(-executors // EXECUTOR_DETAIL_PER_SNAPSHOT)
    for _ in range(turns):
        snapshot = aggregator.snapshot()
        assert len(snapshot["executors"]) == EXECUTOR_DETAIL_PER_SNAPSHOT
        assert snapshot["executors_shown"] == {"shown": EXECUTOR_DETAIL_PER_SNAPSHOT,
                                               "total": executors}
        assert snapshot["cumulative"]["requests"] == 10 * executors
        seen.update(snapshot["executors"])
        for detail in snapshot["executors"].values():
            assert detail["cumulative"]["requests"] == 10
    assert len(seen) == executors
    summary = aggregator.close_trial("t1")
    assert all(stats["requests"] == 10 for stats in summary.executors.values())


def test_rows_a_node_cannot_write_are_counted_once_as_unstored(tmp_path):
    writer = ResultsWriter(tmp_path, "scale", "s1").open_trial("t1", {"workload": {}})
    aggregator = Aggregator(CONFIG, run_id=RUN)
    aggregator.open_trial("t1", SLOS_S, sink=writer)
    nowhere = tmp_path / "missing-directory" / "exec-0.msgpack"   # the node cannot open it
    node = NodeSamples(nowhere, SLOS_S)
    for seq in range(2):
        assert aggregator.ingest(node.encode(make_batch(seq, 25, run=RUN)))
    node.close()
    aggregator.raw_files_lost("t1", writer.gather_executor_samples(["exec-0"]))
    summary = aggregator.close_trial("t1")

    assert summary.integrity["unstored_batches"] == 2          # per summary, not again
    assert summary.integrity["unstored_requests"] == 50
    assert "missing-directory" in summary.integrity["recent_problems"][0]
    assert summary.overall["requests"] == 50                    # live statistics still count
    assert summary.exact["ttft"]["count"] == 0


def test_a_sparse_histogram_answers_what_the_dense_one_does():
    rng = np.random.default_rng(7)
    dense, sparse = Histogram(CONFIG), SparseHistogram(CONFIG)
    other_dense, other_sparse = Histogram(CONFIG), SparseHistogram(CONFIG)
    for piece in range(30):     # pieces with new buckets, then ones inside the filled span
        values = rng.lognormal(15 + (piece % 3), 0.5 + piece / 30, 400 + 50 * piece)
        recording = Recording.of(CONFIG, values.astype(np.int64))
        for histogram in ((dense, sparse) if piece % 2 else (other_dense, other_sparse)):
            histogram.add(recording)
    dense.merge(other_dense)
    sparse.merge(other_sparse)
    everyone = (*PERCENTILES, 0.001, 25.0, 99.99, 100.0)
    assert sparse.percentiles(everyone) == dense.percentiles(everyone)
    for name in ("count", "total", "min", "max", "mean", "clamped", "rejected"):
        assert getattr(sparse, name) == getattr(dense, name), name
    indices, counts = sparse.filled()
    assert (np.diff(indices) > 0).all() and counts.sum() == dense.count
    assert np.array_equal(dense.counts[indices], counts)
    sparse.reset()
    assert sparse.count == 0 and sparse.percentiles() == [None] * len(PERCENTILES)


def test_a_stopped_histogram_mode_trial_keeps_its_gathered_rows(tmp_path):
    """A trial cut short in histogram mode: the executors' complete node files join the
    attempt's samples.msgpack.partial, as a raw-mode attempt's rows would be there."""
    recipe = recipe_from_dict({"scenario": "scale", "aggregation": {"mode": "auto",
                                                                     "histograms_from": 2},
                               "workload": {"service": "simulator", "model": "sim-llama"}})
    session_dir = tmp_path / "results" / "scale" / "s1"
    session_dir.mkdir(parents=True)
    record = SessionRecording(recipe, "s1", session_dir, "127.0.0.1", single_machine=True,
                              control_tls=False)
    try:
        trial = expand_trials(recipe)[0]
        record.begin_trial(trial, tmp_path)
        modes = record.choose_sample_mode(["executor-0", "executor-1"])
        assert {spec["mode"] for spec in modes.values()} == {"histograms"}   # auto, 2 >= 2
        raw_file = Path(modes["executor-0"]["raw_file"])
        assert raw_file.is_absolute() and raw_file.parent.parent == session_dir / trial.id
        node = NodeSamples(raw_file, {})
        node.encode(make_batch(0, 30, run="s1", executor="executor-0", trial=trial.id))
        node.close()
        record.abort_trial("stopped by the test")
    finally:
        record.finish({"state": "STOPPED", "error": None}, write=False)
        record.close()
    rows = read_samples(session_dir / trial.id / "samples.msgpack.partial")
    assert [batch.n for batch in rows] == [30]
    assert (session_dir / trial.id / "trial.stopped").exists()
    assert aggregation_mode({"mode": "auto", "histograms_from": 32}, 31)["mode"] == "raw"
