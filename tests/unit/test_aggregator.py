"""Aggregator: metric definitions, snapshots, integrity accounting and trial summaries."""
import msgpack
import numpy as np
import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.measure.definitions import derive
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.ingest.sequences import SequenceTracker
from hpcbench.coordinator.session.results import ResultsWriter
from hpcbench.proto.samples import ErrorClass, Phase, SampleBatch, empty_columns, encode
from tests.support.sample_batches import make_batch

RUN = "run-1"


def test_metric_definitions_on_hand_made_rows():
    cols = empty_columns(4)
    # row 0: open loop; row 1: closed loop (slot 3), sent 2 ms late; row 2: timeout;
    # row 3: warmup (must not count)
    cols["intended_ns"][:] = [1_000_000, 2_000_000, 3_000_000, 4_000_000]
    cols["send_ns"][:] = [1_010_000, 4_000_000, 3_010_000, 4_010_000]
    cols["first_ns"][:] = [6_000_000, 9_000_000, 0, 9_000_000]
    cols["end_ns"][:] = [10_000_000, 15_000_000, 8_000_000, 12_000_000]
    cols["chunks"][:] = [3, 4, 0, 2]
    cols["tokens_out"][:] = [5, 4, 0, 2]
    cols["slot"][:] = [-1, 3, -1, -1]
    cols["error"][:] = [ErrorClass.OK, ErrorClass.OK, ErrorClass.TIMEOUT, ErrorClass.OK]
    cols["phase"][:] = [Phase.MEASURED, Phase.MEASURED, Phase.MEASURED, Phase.WARMUP]
    itl = np.array([1_000_000, 3_000_000, 2_000_000, 2_000_000, 2_000_000, 3_000_000])
    batch = SampleBatch(RUN, "t1", "e", "n", 0, 0, 0, cols, itl)

    derived = derive(batch)
    assert derived.values["ttft"].tolist() == [5_000_000, 5_000_000]  # open: -intended; closed: -send
    assert derived.values["itl"].tolist() == [1_000_000, 3_000_000, 2_000_000, 2_000_000,
                                              2_000_000]   # warmup row's gap excluded
    assert derived.values["tpot"].tolist() == [1_000_000, 2_000_000]  # (end-first)/(tokens-1)
    assert derived.values["e2e"].tolist() == [9_000_000, 13_000_000, 5_000_000]  # timeout kept
    assert derived.values["dispatch_lag"].tolist() == [10_000, 2_000_000, 10_000]
    assert derived.values["queue_time"].tolist() == [2_000_000]  # only the row that waited
    assert (derived.requests, derived.ok, derived.warmup) == (3, 2, 1)
    assert derived.errors[ErrorClass.TIMEOUT] == 1
    assert derived.output_tokens == 9

    slo = derive(batch, {"ttft": 5_000_000, "tpot": 1_500_000})
    assert slo.good == 1  # row 1 misses the TPOT SLO; the timeout is not good
    assert derive(batch, {"itl": 2_500_000}).good == 1  # row 0's largest gap is 3 ms


def test_snapshot_reports_interval_and_cumulative_statistics():
    aggregator = Aggregator(run_id=RUN, interval_s=1.0)
    aggregator.open_trial("t1", slos_s={"ttft": 10.0})
    for seq in range(3):
        assert aggregator.ingest(encode(make_batch(seq, 100, errors={0: ErrorClass.TIMEOUT,
                                                                    1: ErrorClass.HTTP_STATUS})))
    aggregator.ingest(make_batch(0, 50, executor="exec-1", phase=Phase.WARMUP))

    first = aggregator.snapshot()
    interval = first["interval"]
    assert first["trial"] == "t1" and first["latency_unit"] == "ms"
    assert interval["requests"] == 300 and interval["ok"] == 294
    assert interval["errors"] == {"timeout": 3, "http_status": 3}
    assert interval["warmup_requests"] == 50
    assert interval["output_tokens"] == 294 * 9 and interval["input_tokens"] == 294 * 128
    assert interval["latency"]["ttft"]["count"] == 294
    assert interval["latency"]["itl"]["count"] == 294 * 8
    assert interval["good_requests"] == 294  # a 10 s TTFT SLO: every successful request meets it
    assert interval["req_per_s"] == pytest.approx(300 / first["interval_s"])
    stats = interval["latency"]["e2e"]
    assert stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["p99.9"] <= \
        stats["max"]
    assert set(first["executors"]) == {"exec-0", "exec-1"}
    assert first["executors"]["exec-0"]["interval"]["requests"] == 300
    assert first["cumulative"]["requests"] == 300
    # cumulative rates use the samples' own measured window: 300 requests 1 ms apart
    assert first["cumulative"]["req_per_s"] == pytest.approx(300 / first["cumulative"]["seconds"])
    assert 0.29 < first["cumulative"]["seconds"] < 0.5

    aggregator.ingest(make_batch(3, 100))
    second = aggregator.snapshot()
    assert second["seq"] == first["seq"] + 1
    assert second["interval"]["requests"] == 100
    assert second["cumulative"]["requests"] == 400
    third = aggregator.snapshot()
    assert third["interval"]["requests"] == 0 and third["interval"]["latency"]["ttft"]["p50"] is None
    assert third["cumulative"]["latency"]["ttft"]["count"] == 394


def test_progress_shows_the_trial_rate_so_far_not_an_interval_without_a_batch():
    """An interval that no batch reached has a rate of 0; what `hpcbench run` and the gRPC
    Snapshot show is the measured window's rate, which does not drop to 0 with it."""
    from hpcbench.coordinator.session.recording import headline

    aggregator = Aggregator(run_id=RUN)
    aggregator.ingest(make_batch(0, 300))
    aggregator.snapshot()
    empty = aggregator.snapshot()
    assert empty["interval"]["requests"] == 0 and empty["interval"]["req_per_s"] == 0
    shown = headline(empty)
    assert shown["req_per_s"] == empty["cumulative"]["req_per_s"] > 0
    assert shown["requests"] == 300


def test_goodput_is_absent_without_slos():
    aggregator = Aggregator(run_id=RUN)
    aggregator.ingest(make_batch(0))
    snapshot = aggregator.snapshot()
    assert snapshot["interval"]["goodput_req_per_s"] is None


def test_gaps_and_duplicates_are_counted_and_duplicates_not_double_counted():
    aggregator = Aggregator(run_id=RUN)
    for seq in (0, 1, 1, 3, 0):
        aggregator.ingest(encode(make_batch(seq, 10)))
    integrity = aggregator.integrity()
    assert integrity["duplicate_batches"] == 2
    assert integrity["missing_batches"] == 1
    assert integrity["missing_by_executor"] == {"exec-0": 1}
    assert aggregator.snapshot()["cumulative"]["requests"] == 30

    aggregator.ingest(encode(make_batch(2, 10)))  # the missing batch arrives late
    integrity = aggregator.integrity()
    assert integrity["missing_batches"] == 0 and integrity["late_batches"] == 1
    assert aggregator.batches_received("exec-0") == 4
    assert aggregator.snapshot()["cumulative"]["requests"] == 40
    assert any("duplicate" in problem for problem in integrity["recent_problems"])


def test_sequence_tracker_splits_gap_ranges():
    tracker = SequenceTracker()
    assert all(tracker.accept(seq) for seq in (0, 5, 2, 4, 9))
    assert tracker.gaps == 2 + 3  # 1, 3 and 6, 7, 8
    assert not tracker.accept(2) and tracker.duplicates == 1
    assert tracker.late == 2


@pytest.mark.parametrize("payload", [
    b"\xc1garbage",
    msgpack.packb([1, 2, 3]),
    msgpack.packb({"v": 99, "kind": "samples"}),
    msgpack.packb({**msgpack.unpackb(encode(make_batch(0, 5))), "n": 6}),  # columns too short
    msgpack.packb({**msgpack.unpackb(encode(make_batch(0, 5))), "itl_ns": b"\x00" * 8}),
])
def test_malformed_batches_are_counted_never_raised(payload):
    aggregator = Aggregator(run_id=RUN)
    assert aggregator.ingest(payload) is False
    integrity = aggregator.integrity()
    assert integrity["malformed_batches"] == 1
    assert integrity["recent_problems"][0].startswith("malformed batch:")
    assert aggregator.ingest(encode(make_batch(0, 5)))  # and the aggregator goes on
    assert aggregator.snapshot()["interval"]["requests"] == 5


def test_foreign_and_late_batches_are_reported_not_counted():
    aggregator = Aggregator(run_id=RUN)
    assert not aggregator.ingest(make_batch(0, run="other-run"))
    aggregator.ingest(make_batch(0, 10))
    summary = aggregator.close_trial("t1")
    assert summary.requests == 10
    assert not aggregator.ingest(make_batch(1, 10))  # trial t1 is closed
    integrity = aggregator.integrity()
    assert integrity["wrong_run_batches"] == 1
    assert integrity["after_close_batches"] == 1 and integrity["after_close_requests"] == 10


def test_trials_are_kept_apart():
    aggregator = Aggregator(run_id=RUN)
    aggregator.ingest(make_batch(0, 30, trial="t1"))
    aggregator.ingest(make_batch(1, 70, trial="t2"))
    assert aggregator.snapshot()["trial"] == "t2"
    first, second = aggregator.close_trial("t1"), aggregator.close_trial("t2")
    assert (first.requests, second.requests) == (30, 70)
    assert aggregator.close_trial("never-seen").requests == 0


def test_bad_slo_is_a_configuration_error():
    with pytest.raises(HpcbenchError) as raised:
        Aggregator(run_id=RUN).open_trial("t1", slos_s={"latency": 1.0})
    assert raised.value.code == "E006" and "latency" in raised.value.message


def test_summary_puts_exact_percentiles_beside_hdr_ones(tmp_path):
    aggregator = Aggregator(run_id=RUN)
    writer = ResultsWriter(tmp_path, "scenario", "session").open_trial("t1", {"trial": "t1"})
    aggregator.open_trial("t1", slos_s={"ttft": 0.05}, sink=writer)
    for seq in range(20):
        aggregator.ingest(encode(make_batch(seq // 2, 500, executor=f"exec-{seq % 2}", seed=seq)))
    aggregator.snapshot()
    summary = aggregator.close_trial("t1")

    assert summary.requests == 10_000 and set(summary.executors) == {"exec-0", "exec-1"}
    assert summary.exact is not None
    for metric in ("ttft", "itl", "tpot", "e2e", "dispatch_lag"):
        hdr, exact = summary.overall["latency"][metric], summary.exact[metric]
        assert hdr["count"] == exact["count"] > 0
        for key in ("p50", "p90", "p95", "p99", "p99.9", "max"):
            # 0.1 %, or one 512 ns unit for sub-millisecond values (1 µs lowest discernible)
            assert hdr[key] == pytest.approx(exact[key], rel=1e-3, abs=512e-6), (metric, key)
    assert summary.integrity["missing_batches"] == 0
    assert summary.overall["goodput_req_per_s"] is not None
    assert summary.slos_s == {"ttft": 0.05}
    rows = summary.csv_rows()
    assert {(row["metric"], row["source"]) for row in rows} >= {("ttft", "hdr"), ("ttft", "exact")}


def test_inconsistent_batch_objects_are_counted_as_malformed():
    aggregator = Aggregator(run_id=RUN)
    batch = make_batch(0, 10)
    batch.itl_ns = batch.itl_ns[:-1]  # one gap fewer than the chunks say
    assert aggregator.ingest(batch) is False
    short = make_batch(1, 10)
    short.columns["end_ns"] = short.columns["end_ns"][:5]
    assert aggregator.ingest(short) is False
    assert aggregator.integrity()["malformed_batches"] == 2


def test_impossible_values_are_reported_not_hidden():
    aggregator = Aggregator(run_id=RUN)
    batch = make_batch(0, 10)
    batch.columns["first_ns"][0] = batch.columns["intended_ns"][0] - 5  # token before intent
    aggregator.ingest(batch)
    cumulative = aggregator.snapshot()["cumulative"]
    assert cumulative["invalid_values"] == {"ttft": {"negative": 1, "above_highest": 0}}
    assert cumulative["latency"]["ttft"]["count"] == 9


class FullDisk:
    """A trial sink on a disk that is full: every write fails like the real OSError would."""

    def append_batch(self, payload):
        raise OSError(28, "No space left on device")

    def append_interval(self, start_time_s, length_s, histograms):
        raise OSError(28, "No space left on device")

    def read_batches(self):
        return iter(())


def test_a_failing_results_disk_is_reported_and_live_statistics_go_on():
    aggregator = Aggregator(run_id=RUN)
    aggregator.open_trial("t1", sink=FullDisk())
    assert aggregator.ingest(make_batch(0, 10))
    snapshot = aggregator.snapshot()
    assert snapshot["cumulative"]["requests"] == 10
    integrity = snapshot["integrity"]
    assert (integrity["unstored_batches"], integrity["unstored_requests"],
            integrity["unwritten_intervals"]) == (1, 10, 1)
    assert any("No space left" in problem for problem in integrity["recent_problems"])


def test_unreadable_raw_samples_give_no_exact_statistics_instead_of_failing(tmp_path):
    aggregator = Aggregator(run_id=RUN)
    writer = ResultsWriter(tmp_path, "scenario", "session").open_trial("t1", {})
    aggregator.open_trial("t1", sink=writer)
    aggregator.ingest(make_batch(0, 10))
    writer.append_batch(b"\x81\xa1v\x63")  # someone appended a map that is not a batch
    summary = aggregator.close_trial("t1")
    assert summary.requests == 10 and summary.exact is None
    assert any("unreadable" in problem for problem in aggregator.integrity()["recent_problems"])


def test_the_standalone_executor_summary_and_the_coordinator_agree_on_the_same_samples(tmp_path):
    """One measurement core: on batches with failures mid-stream, timeouts and refused
    connections, `hpcbench-executor --out`'s summary and the coordinator's exact statistics
    give the same counts and the same p50/p99/max for every metric both show."""
    from hpcbench.executor.summary import summarize

    batches = [make_batch(seq, errors={3: ErrorClass.CONNECTION_REFUSED}) for seq in range(4)]
    for batch in batches:
        cols = batch.columns
        for row in (10, 20):    # failed after streaming: their gaps must not count as ITL
            cols["error"][row] = ErrorClass.CONNECTION_RESET
        cols["error"][30] = ErrorClass.TIMEOUT    # ends at the timeout: counts in E2E
        cols["end_ns"][30] = cols["intended_ns"][30] + 9_000_000_000
    writer = ResultsWriter(tmp_path, "scenario", "session").open_trial("t1", {"trial": "t1"})
    aggregator = Aggregator(run_id=RUN)
    aggregator.open_trial("t1", sink=writer)
    for batch in batches:
        aggregator.ingest(encode(batch))
    coordinator = aggregator.close_trial("t1")
    standalone = summarize(batches)

    assert standalone["requests"] == coordinator.overall["requests"] == 800
    assert standalone["ok"] == coordinator.overall["ok"] == 800 - 4 * 4
    assert {name.lower(): count for name, count in standalone["errors"].items()} \
        == coordinator.overall["errors"]
    for shown, metric in (("ttft_ms", "ttft"), ("itl_ms", "itl"), ("e2e_ms", "e2e"),
                          ("dispatch_lag_ms", "dispatch_lag")):
        exact = coordinator.exact[metric]
        assert (standalone[shown]["p50"], standalone[shown]["p99"], standalone[shown]["max"]) \
            == (round(exact["p50"], 3), round(exact["p99"], 3), round(exact["max"], 3)), metric
    # the timed-out request is in the E2E tail, and the failed requests' gaps are not in ITL
    assert standalone["e2e_ms"]["max"] == 9000.0
    assert coordinator.exact["itl"]["count"] == sum(
        int(np.maximum(b.columns["chunks"][b.columns["error"] == 0].astype(int) - 1, 0).sum())
        for b in batches)


def test_a_sessions_aggregator_counts_what_is_not_its_own_as_foreign():
    """Only the session's opened trials, admitted executors and monitor nodes count; a batch
    naming a trial the session already closed is foreign too when its executor is not one of
    the session's (not a late batch of its own)."""
    from hpcbench.coordinator.ingest.receiver import AggregatorServer
    from hpcbench.proto import telemetry

    aggregator = Aggregator(run_id=RUN, admitted_only=True)
    aggregator.open_trial("t1")
    aggregator.admit_executors(["exec-0"])
    assert aggregator.ingest(encode(make_batch(0, 5, executor="exec-0", trial="t1")))
    assert not aggregator.ingest(encode(make_batch(0, 5, executor="forger", trial="t1")))
    assert not aggregator.ingest(encode(make_batch(1, 5, executor="exec-0", trial="t-next")))
    aggregator.close_trial("t1")
    assert not aggregator.ingest(encode(make_batch(0, 5, executor="forger", trial="t1")))
    assert not aggregator.ingest(encode(make_batch(1, 5, executor="exec-0", trial="t1")))
    integrity = aggregator.integrity()
    assert (integrity["foreign_batches"], integrity["foreign_requests"]) == (3, 15)
    assert (integrity["after_close_batches"], integrity["batches"]) == (1, 1)
    seen = []
    server = AggregatorServer(aggregator, on_telemetry=seen.append)
    try:
        server.handle(telemetry.encode(RUN, "someone", 0, 1, {"hpcbench_node_load1": 9.0}))
        assert (server.telemetry_foreign, seen) == (1, [])   # before any monitor: none count
        server.telemetry_nodes.add("node-1")
        server.handle(telemetry.encode(RUN, "node-1", 0, 1, {"hpcbench_node_load1": 0.5}))
        assert len(seen) == 1 and server.telemetry_messages == 1
    finally:
        server.stop()
