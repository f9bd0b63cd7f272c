"""A slow aggregator: the executor's PUSH blocks instead of dropping, and once the aggregator
catches up every sample is accounted for.

Real parts: the executor's ZmqSink (its PUSH socket and hand-off queue) pushes over TCP to a
real AggregatorServer (PULL socket, ingest thread). The aggregator's results sink is held shut
by a gate, which is exactly a results disk that stops keeping up: its ingest thread stalls, its
PULL queue fills, TCP buffers fill, the PUSH reaches its high-water mark, the executor's
hand-off queue fills and `send` blocks the load generator (back-pressure). Then the gate opens.
"""
from __future__ import annotations

import threading

import pytest

from hpcbench.coordinator.ingest import receiver as aggregator_server
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.ingest.receiver import AggregatorServer
from hpcbench.executor.sinks import QUEUE_BATCHES, ZmqSink
from hpcbench.proto import samples
from tests.support.faults import record
from tests.support.sample_batches import make_batch
from tests.support.waiting import wait_until

BATCHES = 160
ROWS = 2_000       # ~250 kB a batch: together far more than the socket buffers hold


class GatedSink:
    """A trial sink that stores batches only while its gate is open (a stalled disk)."""

    def __init__(self):
        self.gate = threading.Event()
        self.payloads: list[bytes] = []

    def append_batch(self, payload: bytes) -> None:
        self.gate.wait(60)
        self.payloads.append(payload)

    def append_interval(self, start_time_s, length_s, histograms) -> None:
        pass

    def read_batches(self):
        return (samples.decode(payload) for payload in self.payloads)


@pytest.fixture
def slow_aggregator(monkeypatch):
    monkeypatch.setattr(aggregator_server, "RECEIVE_HWM", 2)
    aggregator = Aggregator(run_id="bp")
    sink = GatedSink()
    aggregator.open_trial("t", sink=sink)
    server = AggregatorServer(aggregator, "tcp://127.0.0.1:0")
    server.start()
    try:
        yield aggregator, server, sink
    finally:
        sink.gate.set()
        server.stop()


def test_a_stalled_aggregator_blocks_the_executor_and_loses_nothing(slow_aggregator):
    aggregator, server, sink = slow_aggregator
    push = ZmqSink(server.endpoint, sndhwm=2)
    batches = [make_batch(seq, n=ROWS, run="bp", trial="t", executor="e0")
               for seq in range(BATCHES)]
    handed_over = []

    def generate_load():
        for batch in batches:
            push.send(batch)              # blocks while the aggregator cannot keep up
            handed_over.append(batch.seq)

    producer = threading.Thread(target=generate_load, daemon=True)
    producer.start()
    # the hand-off queue is full: the producer is blocked in send(), nothing was dropped
    wait_until(lambda: push.backlog == QUEUE_BATCHES, timeout=30,
               what="the executor's hand-off queue to fill behind the blocked PUSH")
    assert producer.is_alive() and len(handed_over) < BATCHES
    assert aggregator.integrity()["batches"] <= len(handed_over)

    record("faults_injected")
    sink.gate.set()                       # the disk catches up
    producer.join(60)
    assert not producer.is_alive()
    push.close()
    wait_until(lambda: aggregator.batches_received("e0") == BATCHES, timeout=60,
               what="every batch to reach the aggregator")

    summary = aggregator.close_trial("t")
    produced_rows = sum(batch.n for batch in batches)
    produced_samples = sum(batch.n + len(batch.itl_ns) for batch in batches)
    integrity = summary.integrity
    record("samples_produced", produced_samples)
    record("samples_accounted", integrity["samples"] + integrity["missing_batches"])
    assert integrity["samples"] == produced_samples
    assert (integrity["missing_batches"], integrity["duplicate_batches"],
            integrity["malformed_batches"]) == (0, 0, 0)
    stored = list(sink.read_batches())
    assert [batch.seq for batch in stored] == list(range(BATCHES))     # in order, each once
    assert sum(batch.n for batch in stored) == produced_rows
    assert summary.overall["requests"] == produced_rows
