"""ZeroMQ CURVE on the sample endpoint (hpcbench.common.curve), over real TCP sockets.

With CURVE on, a plain-text PUSH and a PUSH with the wrong server key deliver nothing (the
handshake fails before any message), a PUSH holding the session's keys delivers, and the key
file is private (0600) like the control token.
"""
from __future__ import annotations

import stat

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from hpcbench.common import curve, sockets
from hpcbench.common.errors import HpcbenchError
from hpcbench.proto import samples
from tests.support.sample_batches import make_batch
from tests.support.waiting import wait_until


@pytest.fixture
def context():
    context = zmq.Context()
    try:
        yield context
    finally:
        context.destroy(linger=0)


def pull_with_curve(context, keys) -> tuple[zmq.Socket, str]:
    return sockets.bind(zmq.PULL, "tcp://127.0.0.1:0", hwm=1000, curve=keys, context=context)


def push(context, endpoint: str, keys=None) -> zmq.Socket:
    return sockets.connect(zmq.PUSH, endpoint, hwm=1000, curve=keys, context=context)


def received(pull: zmq.Socket) -> list[bytes]:
    messages = []
    while pull.poll(0):
        messages.append(pull.recv())
    return messages


def test_keys_are_private_and_load_back(tmp_path):
    keys = curve.create_keys(tmp_path)
    path = tmp_path / curve.KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert curve.load_keys(tmp_path) == keys == curve.load_keys(path)
    assert keys.server_secret not in (keys.server_public, keys.client_public)


def test_a_broken_or_missing_key_file_is_e006(tmp_path):
    with pytest.raises(HpcbenchError) as missing:
        curve.load_keys(tmp_path / "nope.keys")
    (tmp_path / "bad.keys").write_text("{not json")
    with pytest.raises(HpcbenchError) as broken:
        curve.load_keys(tmp_path / "bad.keys")
    assert missing.value.code == broken.value.code == "E006"
    assert "bad.keys" in broken.value.message


HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


def test_only_a_pusher_with_the_session_keys_delivers_samples(tmp_path, context):
    keys = curve.create_keys(tmp_path / "session")
    strangers = curve.create_keys(tmp_path / "other-session")
    pull, endpoint = pull_with_curve(context, keys)
    events = pull.get_monitor_socket(HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    plain = push(context, endpoint)
    wrong = push(context, endpoint, strangers)
    batch = samples.encode(make_batch(0, n=4))
    for intruder in (plain, wrong):
        try:   # queued until the handshake, or refused at once: either way it must not arrive
            intruder.send(b"intruder", zmq.NOBLOCK)
        except zmq.Again:
            pass

    def refusals(count: int) -> None:
        seen = 0
        while seen < count:                  # each refused at the handshake, by the server
            assert events.poll(10_000), "no handshake event from the CURVE server"
            event = recv_monitor_message(events)
            if event["event"] & HANDSHAKE_FAILED:
                seen += 1

    refusals(2)
    good = push(context, endpoint, keys)
    good.send(batch)
    message = wait_until(lambda: received(pull), timeout=10, what="the keyed PUSH's batch")
    assert message == [batch]
    refusals(2)                               # the intruders retry and are refused again
    assert received(pull) == []               # and nothing of theirs ever arrived
    for socket in (plain, wrong, good, events):
        socket.close(linger=0)
    pull.disable_monitor()
    pull.close(linger=0)


# ---- the components with CURVE on: AggregatorServer + executor ZmqSink, bus publisher + subscribe

def test_the_aggregator_takes_batches_only_from_executors_holding_the_keys(tmp_path):
    from hpcbench.coordinator.ingest.aggregator import Aggregator
    from hpcbench.coordinator.ingest.receiver import AggregatorServer
    from hpcbench.executor.sinks import ZmqSink

    keys = curve.create_keys(tmp_path)
    aggregator = Aggregator(run_id="run-1")
    with AggregatorServer(aggregator, "tcp://127.0.0.1:0", curve=keys) as server:
        context = zmq.Context()
        try:
            events = server._socket.get_monitor_socket(HANDSHAKE_FAILED)
            intruder = push(context, server.endpoint)      # plain text
            try:   # whether ZeroMQ queues it locally or refuses at once, it never arrives
                intruder.send(samples.encode(make_batch(0, n=4, executor="intruder")),
                              zmq.NOBLOCK)
            except zmq.Again:
                pass
            assert events.poll(10_000) and recv_monitor_message(events)["event"] & HANDSHAKE_FAILED
            executor = ZmqSink(server.endpoint, curve=keys)
            for seq in range(3):
                executor.send(make_batch(seq, n=4, executor="e0"))
            executor.close()
            wait_until(lambda: aggregator.batches_received("e0") == 3, timeout=10,
                       what="the keyed executor's batches")
            integrity = aggregator.integrity()
            assert integrity["batches"] == 3 and integrity["malformed_batches"] == 0
            assert aggregator.batches_received("intruder") == 0
            intruder.close(linger=0)
            events.close(linger=0)
            server._socket.disable_monitor()
        finally:
            context.destroy(linger=0)


def test_the_bus_reaches_only_subscribers_holding_the_keys(tmp_path):
    from hpcbench.coordinator.bus.publisher import BusPublisher, subscribe
    from hpcbench.proto import bus as contract

    keys = curve.create_keys(tmp_path)
    with BusPublisher("tcp://127.0.0.1:0", run="r", curve=keys) as bus:
        bus.event(contract.event_data(contract.Event.STATE, "r", "RUNNING"))
        keyed = next(subscribe(bus.endpoint, idle_timeout_s=10, curve=keys))
        assert keyed["topic"] == contract.EVENT and keyed["data"]["event"] == "state"
        assert list(subscribe(bus.endpoint, idle_timeout_s=1.0)) == []   # plain text: nothing
