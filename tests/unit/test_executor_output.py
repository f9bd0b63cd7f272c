"""Where samples go: ZeroMQ PUSH to a PULL socket and a file (the standalone CLI process is in
tests/integration/test_executor_cli.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import uvloop
import zmq

from hpcbench.executor.config import LoadConfig
from hpcbench.executor.engine import run_trial
from hpcbench.executor.sinks import QUEUE_BATCHES, FileSink, ZmqSink, read_batches
from hpcbench.proto import samples
from hpcbench.servers.simulator import start_simulator


def trial(url, sink, **overrides):
    workload = {"api": "openai-chat", "model": "sim-model", "duration": 1.2, "concurrency": 4,
                "dataset": {"input_tokens": 8, "output_tokens": 4, "ignore_eos": True},
                **overrides}
    config = LoadConfig.from_workload(workload, url, run_id="run-1", trial_id="t-3",
                                      executor_id="exec-a", node="node7")
    config = dataclasses.replace(config, batch_max_rows=50)
    try:
        return uvloop.run(run_trial(config, sink))
    finally:
        sink.close()


def test_batches_stream_over_zmq_in_sequence_without_loss():
    context = zmq.Context.instance()
    pull = context.socket(zmq.PULL)
    try:
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        with start_simulator(mode="fixed", ttft_ms=1, itl_ms=1) as sim:
            stats = trial(sim.url, ZmqSink(f"tcp://127.0.0.1:{port}", sndhwm=2))
        received = []
        while pull.poll(2000):
            received.append(samples.decode(pull.recv()))
            if sum(batch.n for batch in received) == stats.requests:
                break
    finally:
        pull.close(linger=0)
    assert stats.batches > 2                             # cut by rows (50) and by interval
    assert [batch.seq for batch in received] == list(range(stats.batches))
    assert sum(batch.n for batch in received) == stats.requests
    first = received[0]
    assert (first.run, first.trial, first.executor, first.node) == \
        ("run-1", "t-3", "exec-a", "node7")
    req_ids = np.concatenate([batch.columns["req_id"] for batch in received])
    assert sorted(req_ids) == list(range(stats.requests))   # each request exactly once


def test_file_sink_round_trips_every_batch(tmp_path):
    path = tmp_path / "samples.bin"
    with start_simulator(mode="fixed", ttft_ms=1, itl_ms=1) as sim:
        stats = trial(sim.url, FileSink(path), duration=0, max_requests=120)
    batches = list(read_batches(path))
    assert [batch.seq for batch in batches] == list(range(stats.batches))
    assert sum(batch.n for batch in batches) == stats.requests == 120
    assert sum(len(batch.itl_ns) for batch in batches) == 120 * 3


def test_truncated_sample_file_is_reported(tmp_path):
    path = tmp_path / "samples.bin"
    with start_simulator(mode="fixed", ttft_ms=1, itl_ms=1) as sim:
        trial(sim.url, FileSink(path), duration=0, max_requests=5)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(samples.SampleBatchError, match="truncated"):
        list(read_batches(path))


def test_zmq_sink_blocks_at_its_high_water_mark_instead_of_dropping():
    """A coordinator that stops reading: the sink's queue fills and its sender blocks; once
    the reader resumes, every batch arrives, in order."""
    import threading

    from tests.support.waiting import wait_until

    context = zmq.Context.instance()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 1)
    # inproc: no kernel buffer between the sockets, so the high-water marks alone decide
    endpoint = "inproc://executor-hwm-test"
    pull.bind(endpoint)
    sink = ZmqSink(endpoint, sndhwm=1, context=context)
    total = 100
    template = samples.SampleBatch(run="r", trial="t", executor="e", node="n", seq=0,
                                   interval=0, epoch_ns=0, columns=samples.empty_columns(1),
                                   itl_ns=np.zeros(0, dtype=np.int64))

    def produce():
        for seq in range(total):
            sink.send(dataclasses.replace(template, seq=seq))
        sink.close()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        wait_until(lambda: sink.backlog == QUEUE_BATCHES, timeout=10,
                   what="the sink's queue to fill up")
        assert producer.is_alive()                # blocked, not dropping
        received = [samples.decode(pull.recv()).seq for _ in range(total)]
        producer.join(timeout=10)
    finally:
        pull.close(linger=0)
    assert received == list(range(total)) and not producer.is_alive()


def test_summary_measures_ttft_from_send_in_closed_loop_and_from_intended_in_open_loop():
    from hpcbench.executor.summary import summarize
    from hpcbench.proto.samples import Phase

    columns = samples.empty_columns(3)
    columns["req_id"][:] = [0, 1, 2]
    columns["slot"][:] = [0, -1, -1]
    columns["intended_ns"][:] = [0, 0, 0]
    columns["send_ns"][:] = [10_000_000, 10_000_000, 0]
    columns["first_ns"][:] = [30_000_000, 30_000_000, 0]
    columns["end_ns"][:] = [40_000_000, 40_000_000, 5_000_000]
    columns["chunks"][:] = [2, 2, 0]
    columns["phase"][:] = [Phase.MEASURED] * 3
    columns["error"][:] = [0, 0, samples.ErrorClass.CONNECTION_REFUSED]
    batch = samples.SampleBatch(run="r", trial="t", executor="e", node="n", seq=0, interval=0,
                                epoch_ns=0, columns=columns,
                                itl_ns=np.array([10_000_000, 10_000_000]))
    summary = summarize([batch], window_s=1.0)
    # nearest rank, as everywhere: the p50 of [20 ms, 30 ms] is 20 ms, not an interpolated 25
    assert summary["ttft_ms"]["max"] == 30.0 and summary["ttft_ms"]["p50"] == 20.0
    assert summary["errors"] == {"CONNECTION_REFUSED": 1} and summary["ok"] == 2
    assert summary["dispatch_lag_ms"]["max"] == 10.0 and summary["itl_ms"]["p50"] == 10.0
    assert summary["request_rate"] == 3.0


def test_recorder_rows_and_gaps_keep_row_boundaries():
    from types import SimpleNamespace

    from hpcbench.executor.recorder import SampleRecorder

    recorder = SampleRecorder("r", "t", "e", "n", epoch_ns=7)
    chunk_sets = [[10, 13, 19], [], [100, 104], [200], [], [300, 301]]
    for request_id, times in enumerate(chunk_sets):
        recorder.add(SimpleNamespace(
            req_id=request_id, intended_ns=1, send_ns=2, end_ns=400, chunk_times=times,
            tokens_in=5, tokens_out=len(times), token_source=2, status=200, error=0,
            phase=1, slot=-1, first_reasoning_ns=times[0] if times else 0,
            first_answer_ns=times[-1] if times else 0, reasoning_tokens=max(len(times) - 1, 0),
            conversation=-1, turn=-1, turns=0))
    assert len(recorder) == 6
    batch = samples.decode(samples.encode(recorder.cut(interval=3)))
    assert list(batch.columns["chunks"]) == [3, 0, 2, 1, 0, 2]
    assert list(batch.columns["first_ns"]) == [10, 0, 100, 200, 0, 300]
    assert list(batch.itl_ns) == [3, 6, 4, 1]
    assert list(batch.columns["first_answer_ns"]) == [19, 0, 104, 200, 0, 301]
    assert list(batch.columns["reasoning_tokens"]) == [2, 0, 1, 0, 0, 1]
    assert (batch.seq, batch.interval, batch.epoch_ns) == (0, 3, 7)
    assert recorder.cut(interval=4) is None and len(recorder) == 0


def test_a_flood_of_finished_requests_is_cut_into_batches_within_the_contracts_bounds(
        monkeypatch):
    """The coordinator drops a message over MAX_MESSAGE_BYTES: whatever finishes at once (a
    trial's end cancels every request in flight), no batch may exceed MAX_ROWS rows or
    MAX_GAPS chunk times, and cutting until None loses and reorders nothing."""
    from types import SimpleNamespace

    from hpcbench.executor import recorder as module

    monkeypatch.setattr(module, "MAX_ROWS", 4)
    monkeypatch.setattr(module, "MAX_GAPS", 10)
    recorder = module.SampleRecorder("r", "t", "e", "n", epoch_ns=0)
    chunk_sets = [list(range(100 * row, 100 * row + count))
                  for row, count in enumerate([3, 0, 5, 9, 1, 12, 2, 2, 0, 4])]
    for request_id, times in enumerate(chunk_sets):
        recorder.add(SimpleNamespace(
            req_id=request_id, intended_ns=1, send_ns=2, end_ns=5000, chunk_times=times,
            tokens_in=5, tokens_out=len(times), token_source=2, status=200, error=0,
            phase=1, slot=-1, first_reasoning_ns=0, first_answer_ns=0, reasoning_tokens=0,
            conversation=-1, turn=-1, turns=0))
    batches = []
    while (batch := recorder.cut(interval=0)) is not None:
        batches.append(samples.decode(samples.encode(batch)))
    for batch in batches:
        assert batch.n <= 4
        assert batch.columns["chunks"].sum() <= 10 or batch.n == 1   # one long answer alone
    assert [seq for batch in batches for seq in [batch.seq]] == list(range(len(batches)))
    assert [int(r) for batch in batches for r in batch.columns["req_id"]] == list(range(10))
    expected_gaps = [b - a for times in chunk_sets for a, b in zip(times, times[1:])]
    assert [int(g) for batch in batches for g in batch.itl_ns] == expected_gaps
