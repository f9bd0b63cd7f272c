"""Wire fuzzing (hypothesis) of the coordinator's two network endpoints, over real sockets.

Sample endpoint (AggregatorServer, ZeroMQ PULL): garbage bytes, random msgpack, good batches
and histogram-mode summaries with one field broken (wrong type, truncated column, huge n,
negative seq, a metric's buckets), truncated payloads,
bad telemetry and duplicate sequence numbers. Each must be rejected and counted (malformed /
duplicate / telemetry_malformed) and the ingest thread must keep running: after every fuzzed
message a good batch is pushed and must be ingested.

Control endpoint (gRPC): random bytes sent as the request of every Control and Agent method
through a raw channel with identity serializers, with and without the token. Without the right
token: UNAUTHENTICATED before anything is parsed; with it: a clean status (never UNKNOWN from a
crash), and the server answers a good call afterwards.
"""
from __future__ import annotations

import grpc
import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcbench.common.auth import call_metadata
from hpcbench.common.measure.buckets import HistogramConfig
from hpcbench.common.measure.summaries import summarise
from hpcbench.coordinator.control.server import Coordinator
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.ingest.receiver import AggregatorServer
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto import control_v1_pb2_grpc as pb_grpc
from hpcbench.proto import samples
from tests.support.faults import WireCounts, record
from tests.support.sample_batches import make_batch
from tests.support.waiting import wait_until

RUN = "fuzz-run"
FUZZ = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class SampleEndpoint:
    """A running AggregatorServer and a PUSH socket connected to it."""

    def __init__(self):
        self.aggregator = Aggregator(run_id=RUN)
        self.server = AggregatorServer(self.aggregator, "tcp://127.0.0.1:0")
        self.server.start()
        self.context = zmq.Context()
        self.push = self.context.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(self.server.endpoint)
        self.next_seq = 0
        self._victim_seq = 0

    def victim_seq(self) -> int:
        """A fresh sequence number for the "victim" executor's fuzzed batches."""
        self._victim_seq += 1
        return self._victim_seq

    def counts(self) -> WireCounts:
        integrity = self.aggregator.integrity()
        return WireCounts(integrity["batches"], integrity["samples"],
                          integrity["malformed_batches"], integrity["duplicate_batches"],
                          integrity["wrong_run_batches"], self.server.telemetry_malformed,
                          self.server.telemetry_messages)

    def good_payload(self) -> bytes:
        payload = samples.encode(make_batch(self.next_seq, n=3, run=RUN, executor="good"))
        self.next_seq += 1
        return payload

    def send_then_good(self, payload: bytes) -> WireCounts:
        """Push `payload`, then a good batch; wait until the good one is in; counts after."""
        before = self.counts()
        self.push.send(payload)
        self.push.send(self.good_payload())
        # one PUSH socket keeps order: once the good batch is in, the fuzzed one was handled
        wait_until(lambda: self.aggregator.batches_received("good") == self.next_seq,
                   timeout=10, what="the good batch after a fuzzed message")
        assert self.server._thread.is_alive()
        delta = self.counts() - before
        record("bad_inputs")
        record("messages_sent", 2)
        record("messages_accounted", delta.accounted)
        assert delta.accounted == 2, delta     # each message went somewhere, none vanished
        return delta

    def close(self):
        self.push.close(linger=0)
        self.context.term()
        self.server.stop()


@pytest.fixture(scope="module")
def endpoint():
    endpoint = SampleEndpoint()
    try:
        yield endpoint
    finally:
        endpoint.close()


def batch_message(seq: int = 0, n: int = 2) -> dict:
    """A valid batch of executor "victim" as a msgpack-ready dict."""
    return msgpack.unpackb(samples.encode(make_batch(0, n=n, run=RUN, executor="victim")),
                           raw=False) | {"seq": seq}


any_msgpack = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=40),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5),
    max_leaves=20)
wrong_types = st.none() | st.booleans() | st.floats() | st.text(max_size=8) | st.binary(max_size=8) \
    | st.lists(st.integers(-2**63, 2**63), max_size=3) | st.integers(-2**63, 2**64 - 1)


@FUZZ
@given(payload=st.binary(max_size=200))
def test_random_bytes_are_counted_malformed_and_ingest_goes_on(endpoint, payload):
    try:
        message = msgpack.unpackb(payload, raw=False)
    except Exception:
        message = None
    delta = endpoint.send_then_good(payload)
    assert delta.batches == 1
    if not (isinstance(message, dict) and message.get("kind") == "telemetry"):
        assert delta.malformed == 1


@FUZZ
@given(message=any_msgpack)
def test_random_msgpack_documents_are_rejected_and_counted(endpoint, message):
    delta = endpoint.send_then_good(msgpack.packb(message))
    assert (delta.batches, delta.malformed + delta.telemetry_malformed) == (1, 1)


@FUZZ
@given(field=st.sampled_from(samples.HEADER_FIELDS), value=wrong_types, data=st.data())
def test_a_batch_with_one_field_wrong_is_rejected_or_consistent(endpoint, field, value, data):
    message = batch_message(seq=endpoint.victim_seq())
    message[field] = value
    if field == "cols" and data.draw(st.booleans(), label="break one column instead"):
        name = data.draw(st.sampled_from(sorted(samples.REQUEST_COLUMNS)), label="column")
        message["cols"] = {**batch_message()["cols"], name: value}
    delta = endpoint.send_then_good(msgpack.packb(message))
    # exactly one outcome: in the results (only if it honours the contract) or counted
    accepted = delta.batches - 1
    assert accepted + delta.malformed + delta.wrong_run + delta.duplicates \
        + delta.telemetry_malformed == 1
    if accepted:
        assert samples.from_message(message).run == RUN


def summary_message(seq: int) -> dict:
    """A valid histogram-mode summary of executor "victim" as a msgpack-ready dict."""
    batch = make_batch(0, n=4, run=RUN, executor="victim")
    batch.seq = seq
    return msgpack.unpackb(samples.encode_summary(summarise(batch, HistogramConfig(), {})),
                           raw=False)


@FUZZ
@given(field=st.sampled_from(samples.SUMMARY_FIELDS), value=wrong_types | any_msgpack,
       metric_field=st.sampled_from((None, *samples.BUCKET_FIELDS)))
def test_a_summary_with_one_field_wrong_is_rejected_or_consistent(endpoint, field, value,
                                                                   metric_field):
    message = summary_message(endpoint.victim_seq())
    if metric_field is None:
        message[field] = value
    else:   # break one field of one metric's buckets instead
        message["metrics"]["ttft"][metric_field] = value
    delta = endpoint.send_then_good(msgpack.packb(message))
    accepted = delta.batches - 1
    assert accepted + delta.malformed + delta.wrong_run + delta.duplicates \
        + delta.telemetry_malformed == 1
    if accepted:
        assert samples.summary_from_message(message).run == RUN


@FUZZ
@given(cut=st.integers(1, 400))
def test_a_truncated_batch_is_malformed(endpoint, cut):
    payload = msgpack.packb(batch_message(seq=endpoint.victim_seq()))
    delta = endpoint.send_then_good(payload[:max(len(payload) - cut, 0)])
    assert (delta.batches, delta.malformed) == (1, 1)


@pytest.mark.parametrize("n", [3, 2**31, 2**62, 2**64 - 1, -1])
def test_a_huge_or_negative_n_with_short_columns_is_malformed_without_allocating(endpoint, n):
    message = batch_message(seq=endpoint.victim_seq(), n=2)
    message["n"] = n
    delta = endpoint.send_then_good(msgpack.packb(message))
    assert (delta.batches, delta.malformed) == (1, 1)


def test_a_msgpack_header_claiming_a_huge_array_is_malformed(endpoint):
    # array32 header claiming 4 billion elements, then nothing
    delta = endpoint.send_then_good(b"\xdd\xff\xff\xff\xff")
    assert (delta.batches, delta.malformed) == (1, 1)


def test_duplicates_are_counted_once_and_not_aggregated_twice(endpoint):
    payload = msgpack.packb(batch_message(seq=0) | {"executor": "dup"})
    first = endpoint.send_then_good(payload)
    second = endpoint.send_then_good(payload)
    good = make_batch(0, n=3, run=RUN)
    assert (first.batches, first.duplicates) == (2, 0)
    assert (second.batches, second.duplicates) == (1, 1)
    assert second.samples == good.n + len(good.itl_ns)   # only the good batch's samples


def test_batches_of_another_run_are_counted_not_aggregated(endpoint):
    delta = endpoint.send_then_good(msgpack.packb(batch_message() | {"run": "someone-else"}))
    assert (delta.batches, delta.wrong_run) == (1, 1)


@FUZZ
@given(message=st.dictionaries(st.text(max_size=10), any_msgpack, max_size=6))
def test_bad_telemetry_is_counted_and_never_stops_ingest(endpoint, message):
    message["kind"] = "telemetry"
    delta = endpoint.send_then_good(msgpack.packb(message))
    assert delta.batches == 1 and delta.malformed == 0
    assert delta.telemetry_malformed in (0, 1)


# ---- control endpoint ---------------------------------------------------------------------------

def all_methods() -> list[str]:
    return [f"/{service.full_name}/{method.name}"
            for service in pb.DESCRIPTOR.services_by_name.values()
            for method in service.methods]


def unary_or_stream(channel, path: str):
    """A raw callable for `path` that sends and returns bytes as they are."""
    service, name = path.strip("/").split("/")
    method = pb.DESCRIPTOR.services_by_name[service.split(".")[-1]].methods_by_name[name]
    identity = dict(request_serializer=None, response_deserializer=None)
    record("bad_inputs")
    if method.client_streaming and method.server_streaming:
        return lambda payload, **kw: list(channel.stream_stream(path, **identity)(iter([payload]), **kw))
    if method.client_streaming:
        return lambda payload, **kw: channel.stream_unary(path, **identity)(iter([payload]), **kw)
    if method.server_streaming:
        return lambda payload, **kw: list(channel.unary_stream(path, **identity)(payload, **kw))
    return channel.unary_unary(path, **identity)


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    coordinator = Coordinator(tmp_path_factory.mktemp("control-run")).start()
    channel = grpc.insecure_channel(coordinator.address)
    try:
        yield coordinator, channel
    finally:
        channel.close()
        coordinator.stop(grace_s=0)


def assert_control_alive(coordinator, channel):
    stub = pb_grpc.ControlStub(channel)
    stub.List(pb.ListRequest(), metadata=call_metadata(coordinator.token), timeout=10)


@FUZZ
@given(method=st.sampled_from(all_methods()), payload=st.binary(max_size=100),
       token=st.sampled_from(["none", "wrong", "prefix", "longer", "empty-bearer", "raw"]))
def test_control_calls_with_garbage_and_no_valid_token_are_unauthenticated(control, method,
                                                                          payload, token):
    coordinator, channel = control
    metadata = {"none": None, "wrong": call_metadata("x" * len(coordinator.token)),
                "prefix": call_metadata(coordinator.token[:-1]),
                "longer": call_metadata(coordinator.token + "A"),
                "empty-bearer": (("authorization", "Bearer "),),
                "raw": (("authorization", coordinator.token),)}[token]
    before = coordinator.token_check.rejected
    with pytest.raises(grpc.RpcError) as caught:
        unary_or_stream(channel, method)(payload, metadata=metadata, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert coordinator.token not in (caught.value.details() or "")
    assert coordinator.token_check.rejected == before + 1         # counted


CLEAN_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
               grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INTERNAL,
               grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.PERMISSION_DENIED,
               grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.UNIMPLEMENTED}
# methods that block by design (streams, command queues) are given a short deadline
SHORT_DEADLINE = 1.0


@FUZZ
@given(method=st.sampled_from([m for m in all_methods() if not m.endswith("/StartSession")]),
       payload=st.binary(max_size=100))
def test_control_calls_with_the_token_and_garbage_bytes_fail_cleanly(control, method, payload):
    coordinator, channel = control
    try:
        unary_or_stream(channel, method)(payload, metadata=call_metadata(coordinator.token),
                                         timeout=SHORT_DEADLINE)
    except grpc.RpcError as error:
        assert error.code() in CLEAN_CODES, (method, error.code(), error.details())
    assert_control_alive(coordinator, channel)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=120))
def test_start_session_with_a_garbage_recipe_fails_with_e006(control, text):
    """A session started with broken YAML is refused at once with E006 (or ends FAILED with
    E006, validation being its first phase); either way the coordinator keeps serving."""
    coordinator, channel = control
    stub = pb_grpc.ControlStub(channel)
    metadata = call_metadata(coordinator.token)
    request = pb.StartSessionRequest(recipe_yaml="scenario: [" + text)
    record("bad_inputs")
    try:
        status = stub.StartSession(request, metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                grpc.StatusCode.FAILED_PRECONDITION), error
        assert "E006" in error.details()
    else:
        final = wait_until(lambda: (lambda s: s if s.state == pb.FAILED else None)(
            stub.Status(pb.SessionRef(session_id=status.session_id), metadata=metadata,
                        timeout=10)), timeout=20, what="the session to fail")
        assert final.error_code == "E006" and final.error_message
    assert_control_alive(coordinator, channel)
