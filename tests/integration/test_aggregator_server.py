"""AggregatorServer end to end: an executor-like process PUSHes batches and telemetry over TCP;
snapshots and telemetry come out on the metrics bus; results land on disk."""
import subprocess
import sys
import threading

from hpcbench.coordinator.bus.publisher import BusPublisher, subscribe
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.ingest.receiver import AggregatorServer
from hpcbench.coordinator.session.results import ResultsWriter, read_samples, read_summary
from tests.support.waiting import wait_until

RUN = "run-1"
PUSHER = """
import sys, zmq
from hpcbench.proto import samples, telemetry
from tests.support.sample_batches import make_batch
socket = zmq.Context.instance().socket(zmq.PUSH)
socket.connect(sys.argv[1])
for seq in range(int(sys.argv[2])):
    socket.send(samples.encode(make_batch(seq, 100, run="run-1", executor=sys.argv[3])))
    if seq % 5 == 0:
        socket.send(telemetry.encode("run-1", "node-0", seq, 1, {"hpcbench_node_load1": 0.5}))
socket.send(b"\\x92garbage")
socket.close(linger=10_000)
"""


def push_from_process(repo, env, endpoint: str, batches: int, executor: str):
    env = {**env, "PYTHONPATH": str(repo)}
    return subprocess.Popen([sys.executable, "-c", PUSHER, endpoint, str(batches), executor],
                            cwd=repo, env=env)


def test_batches_from_processes_reach_snapshots_bus_and_results(tmp_path, repo, cli_env):
    aggregator = Aggregator(run_id=RUN, interval_s=0.2)
    trial = ResultsWriter(tmp_path, "scenario", "session").open_trial("t1", {"trial": "t1"})
    aggregator.open_trial("t1", sink=trial)
    snapshots = []
    with BusPublisher("tcp://127.0.0.1:0", run=RUN) as bus, \
            AggregatorServer(aggregator, bus=bus, on_snapshot=snapshots.append) as server:
        received = []
        done = threading.Event()

        def collect():
            for message in subscribe(bus.endpoint, ["snapshot", "telemetry"], idle_timeout_s=2):
                received.append(message)
                if done.is_set():
                    return

        listener = threading.Thread(target=collect, daemon=True)
        listener.start()
        children = [push_from_process(repo, cli_env, server.endpoint, 12, f"exec-{i}")
                    for i in range(2)]
        try:
            for child in children:
                assert child.wait(timeout=60) == 0
            wait_until(lambda: aggregator.batches_received("exec-0") == 12
                       and aggregator.batches_received("exec-1") == 12, timeout=20,
                       what="every batch ingested")
            wait_until(lambda: snapshots and snapshots[-1]["cumulative"]
                       and snapshots[-1]["cumulative"]["requests"] == 2_400, timeout=20,
                       what="a snapshot with every request")
            wait_until(lambda: any(m["topic"] == "telemetry" for m in received)
                       and any(m["topic"] == "snapshot" for m in received), timeout=20,
                       what="telemetry and snapshots on the bus")
        finally:
            done.set()
            listener.join(timeout=10)
            for child in children:
                child.kill()
                child.wait()
    snapshot = snapshots[-1]
    assert set(snapshot["executors"]) == {"exec-0", "exec-1"}
    assert snapshot["integrity"]["malformed_batches"] == 2
    assert snapshot["integrity"]["telemetry_messages"] == 6
    telemetry = next(m for m in received if m["topic"] == "telemetry")
    assert telemetry["data"]["metrics"] == {"hpcbench_node_load1": 0.5}

    summary = aggregator.close_trial("t1")
    trial.finish(summary)
    assert summary.requests == 2_400 and summary.exact["ttft"]["count"] == 2_400
    assert read_summary(trial.trial_dir)["overall"]["requests"] == 2_400
    assert sum(batch.n for batch in read_samples(trial.trial_dir / "samples.msgpack")) == 2_400



def test_a_failing_snapshot_consumer_does_not_stop_aggregation():
    calls = []

    def broken_consumer(snapshot):
        calls.append(snapshot)
        raise RuntimeError("consumer bug")

    aggregator = Aggregator(run_id=RUN, interval_s=0.05)
    with AggregatorServer(aggregator, on_snapshot=broken_consumer) as server:
        wait_until(lambda: len(calls) >= 3, timeout=20, what="snapshots after a failing one")
        assert server.latest_snapshot is not None
