"""Metrics bus over real ZeroMQ sockets: contract, last-value cache, slow subscribers."""
import json
import subprocess
import sys
import threading
from pathlib import Path

import msgpack
import pytest
import zmq

from hpcbench.coordinator.bus import publisher as bus_module
from hpcbench.coordinator.bus.publisher import BusPublisher, subscribe
from hpcbench.proto import bus as contract


def state_event(state: str) -> dict:
    return contract.event_data(contract.Event.STATE, "run-1", state)


def trial_start(trial: str) -> dict:
    return contract.event_data(contract.Event.TRIAL_START, "run-1", "RUNNING", trial=trial,
                               index=0, params={})


@pytest.fixture
def publisher():
    with BusPublisher("tcp://127.0.0.1:0", run="run-1") as bus:
        yield bus


def test_messages_carry_schema_version_and_sequence_per_topic(publisher):
    received = []
    messages = subscribe(publisher.endpoint, idle_timeout_s=5)
    publisher.event(state_event("VALIDATING"))  # cached: reaches the subscriber as state
    received.append(next(messages))
    for number in range(3):
        publisher.snapshot({"n": number})
    publisher.event(trial_start("t1"))
    while len(received) < 5:
        received.append(next(messages))
    messages.close()

    assert [(m["topic"], m["seq"]) for m in received] == [
        ("event", 0), ("snapshot", 0), ("snapshot", 1), ("snapshot", 2), ("event", 1)]
    assert all(m["v"] == contract.SCHEMA_VERSION and m["run"] == "run-1" for m in received)
    assert received[-1]["data"] == trial_start("t1")


def test_late_subscriber_gets_current_state_then_live_messages(publisher):
    publisher.event(state_event("RUNNING"))
    publisher.event(trial_start("t0"))
    publisher.event(trial_start("t1"))   # replaces t0's: the newest of each event is kept
    publisher.telemetry({"node": "node-a", "seq": 0})
    publisher.telemetry({"node": "node-b", "seq": 0})
    for number in range(5):
        publisher.snapshot({"n": number})

    messages = subscribe(publisher.endpoint, idle_timeout_s=5)
    state = [next(messages) for _ in range(5)]
    assert all(m["replay"] for m in state)
    assert {(m["topic"], json.dumps(m["data"], sort_keys=True)) for m in state} == {
        ("event", json.dumps(state_event("RUNNING"), sort_keys=True)),
        ("event", json.dumps(trial_start("t1"), sort_keys=True)),
        ("telemetry", json.dumps({"node": "node-a", "seq": 0}, sort_keys=True)),
        ("telemetry", json.dumps({"node": "node-b", "seq": 0}, sort_keys=True)),
        ("snapshot", json.dumps({"n": 4}, sort_keys=True)),
    }
    publisher.snapshot({"n": 5})
    live = next(messages)
    messages.close()
    assert (live["topic"], live["seq"], live["replay"], live["data"]) == \
        ("snapshot", 5, False, {"n": 5})


def test_subscriber_in_another_process_receives_state_then_snapshots(publisher, cli_env):
    """A separate Python process, like a dashboard, joins after the session started."""
    publisher.event(trial_start("t1"))
    publisher.snapshot({"n": 0})
    script = (
        "import json, sys\n"
        "from hpcbench.coordinator.bus.publisher import subscribe\n"
        "for m in subscribe(sys.argv[1], ['snapshot', 'event'], idle_timeout_s=20):\n"
        "    print(json.dumps([m['topic'], m['replay'], m['data']]), flush=True)\n"
        "    if m['data'].get('n') == 3: break\n")
    child = subprocess.Popen([sys.executable, "-c", script, publisher.endpoint],
                             stdout=subprocess.PIPE, text=True, env=cli_env)
    watchdog = threading.Timer(60, child.kill)  # a hung child ends the reads below
    watchdog.start()
    try:
        lines = []
        lines.append(json.loads(child.stdout.readline()))
        lines.append(json.loads(child.stdout.readline()))  # the two cached messages first
        for number in (1, 2, 3):
            publisher.snapshot({"n": number})
        for line in child.stdout:
            lines.append(json.loads(line))
        assert child.wait(timeout=20) == 0
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
    assert sorted(map(json.dumps, lines[:2])) == sorted(map(json.dumps, [
        ["event", True, trial_start("t1")],
        ["snapshot", True, {"n": 0}]]))
    assert lines[2:] == [["snapshot", False, {"n": n}] for n in (1, 2, 3)]


def test_a_stalled_subscriber_loses_messages_but_never_blocks_the_publisher(monkeypatch):
    monkeypatch.setattr(bus_module, "SEND_HWM", 20)
    context = zmq.Context.instance()
    with BusPublisher("tcp://127.0.0.1:0") as publisher:
        stalled = context.socket(zmq.SUB)
        stalled.setsockopt(zmq.RCVHWM, 20)
        stalled.setsockopt(zmq.LINGER, 0)
        stalled.setsockopt(zmq.SUBSCRIBE, b"")
        stalled.connect(publisher.endpoint)
        try:
            publisher.snapshot({"hello": True})
            assert stalled.poll(5000)  # connected and subscribed before the flood
            stalled.recv_multipart()
            blob = b"x" * 16_384
            done = threading.Event()

            def flood():
                for number in range(2_000):
                    publisher.snapshot({"n": number, "blob": blob})
                done.set()

            threading.Thread(target=flood, daemon=True).start()
            assert done.wait(60), "publisher blocked behind a subscriber that does not read"
            received = 0
            while stalled.poll(200):
                stalled.recv_multipart()
                received += 1
            assert received < 2_000   # the stalled subscriber lost some, as designed
        finally:
            stalled.close(linger=0)


def test_contract_rejects_wrong_version_and_unknown_topic():
    frames = contract.pack(contract.SNAPSHOT, 0, "r", 1, {})
    body = msgpack.unpackb(frames[1])
    body["v"] = 2
    with pytest.raises(contract.BusMessageError, match="version"):
        contract.unpack([frames[0], msgpack.packb(body)])
    with pytest.raises(contract.BusMessageError):
        contract.unpack([b"snapshot", b"\xc1"])
    with pytest.raises(contract.BusMessageError, match="topic"):
        contract.pack("gossip", 0, "r", 1, {})


def test_subscriber_skips_malformed_messages():
    """A foreign publisher sending garbage cannot crash a subscriber; valid messages still pass."""
    context = zmq.Context.instance()
    rogue = context.socket(zmq.PUB)
    rogue.setsockopt(zmq.LINGER, 0)
    port = rogue.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def send_garbage_then_valid():
        while not stop.wait(0.02):
            rogue.send_multipart([b"snapshot", b"\xc1 not msgpack"])
            rogue.send_multipart([b"snapshot"])
            rogue.send_multipart(contract.pack(contract.SNAPSHOT, 7, "r", 1, {"ok": True}))

    sender = threading.Thread(target=send_garbage_then_valid, daemon=True)
    sender.start()
    try:
        messages = subscribe(f"tcp://127.0.0.1:{port}", idle_timeout_s=10)
        message = next(messages)
        messages.close()
        assert (message["seq"], message["data"]) == (7, {"ok": True})
    finally:
        stop.set()
        sender.join()
        rogue.close(linger=0)


def test_readme_subscriber_runs_against_a_live_bus(publisher, repo, cli_env, tmp_path):
    """The ten-line subscriber in README section `bus` works as printed."""
    section = (repo / "README.md").read_text().split("<!-- section: bus -->")[1]
    code = section.split("```python\n")[1].split("```")[0]
    assert len(code.strip().splitlines()) <= 11
    script = tmp_path / "subscriber.py"
    script.write_text(code)
    from hpcbench.coordinator.ingest.aggregator import Aggregator
    from tests.support.sample_batches import make_batch
    aggregator = Aggregator(run_id="run-1")
    aggregator.ingest(make_batch(0, 100))
    publisher.event(trial_start("t1"))
    publisher.snapshot(aggregator.snapshot())
    child = subprocess.Popen([sys.executable, str(script), publisher.endpoint],
                             stdout=subprocess.PIPE, text=True, env=cli_env)
    watchdog = threading.Timer(30, child.kill)  # a hung child ends the reads below
    watchdog.start()
    try:
        first, second = child.stdout.readline(), child.stdout.readline()
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
    assert sorted([first.split(":")[0], second.split(":")[0]]) == ["event", "t1"]
    assert "req/s, TTFT p50" in first + second


def test_an_event_outside_the_contract_cannot_be_sent():
    with pytest.raises(contract.BusMessageError, match="missing fields \\['trial'"):
        contract.event_data(contract.Event.TRIAL_END, "run-1", "RUNNING", passed=True, problems=[])
    with pytest.raises(contract.BusMessageError, match="unknown \\['phase'\\]"):
        contract.event_data(contract.Event.STATE, "run-1", "RUNNING", phase="warmup")
    with pytest.raises(ValueError):
        contract.event_data("phase", "run-1", "RUNNING")


def test_every_event_a_session_sends_is_in_the_contract():
    """Read the coordinator's code: every Event it names exists, and nothing publishes a bare
    string as an event name."""
    import ast

    import hpcbench.coordinator as package
    root = Path(package.__file__).parent
    named = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "Event":
                named.add(node.attr)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in (
                    "_event", "publish_event") and node.args:
                assert not isinstance(node.args[0], ast.Constant), \
                    f"{path}:{node.lineno} sends an event by a bare name"
    assert named <= {event.name for event in contract.Event}
    assert {"STATE", "TRIAL_START", "TRIAL_END", "SESSION_END"} <= named
