"""Server responses that break the executor's expectations, played by a real misbehaving server.

`tests.support.faults.BadServer` is an asyncio HTTP server on 127.0.0.1 that answers each
request with a scripted misbehaviour. The executor (its real engine, in-process) must classify
every request (PROTOCOL, TIMEOUT, CONNECTION_RESET, NO_TOKENS ... never a crash), never hang
(the per-request timeout ends a stall or a slow drip), and keep memory bounded: an endless line
without a newline is cut off at the line-length cap, long before the server runs out of bytes.
"""
from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcbench.proto.samples import ErrorClass
from tests.support.executor_runs import rows, run_load
from tests.support.faults import SSE_HEAD, UNTIL_CLOSE_HEAD, BadServer, chunk, record

FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
APIS = {"openai-chat": SSE_HEAD, "openai-completions": SSE_HEAD,
        "ollama-chat": UNTIL_CLOSE_HEAD, "ollama-generate": UNTIL_CLOSE_HEAD}
ENDLESS_BYTES = 256 * 1024 * 1024     # what the server would send if the client never gave up


class Scripted:
    """A BadServer whose response bytes a hypothesis example sets before each run."""

    def __init__(self):
        self.head = SSE_HEAD
        self.body = b""
        self.server = BadServer(self._play)

    async def _play(self, server, writer):
        if self.head is SSE_HEAD:
            framed = (chunk(self.body) if self.body else b"") + b"0\r\n\r\n"
        else:
            framed = self.body
        await server.write(writer, self.head + framed)


@pytest.fixture(scope="module")
def scripted():
    player = Scripted()
    try:
        yield player
    finally:
        player.server.close()


def one_request(url: str, api: str = "openai-chat", timeout: float = 5.0) -> dict:
    record("bad_inputs")
    stats, batches = run_load(url, api=api, max_requests=1, request_timeout=timeout)
    row = rows(batches)
    assert len(row["error"]) == 1
    return {name: int(column[0]) for name, column in row.items()}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["choices", "delta", "content", "text", "usage", "completion_tokens",
                         "prompt_tokens", "done", "message", "response", "eval_count", "error",
                         "finish_reason", "x"]), c, max_size=4),
    max_leaves=10)


def as_stream(api: str, events: list) -> bytes:
    if api.startswith("openai"):
        return b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events)
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


@FUZZ
@given(api=st.sampled_from(sorted(APIS)), events=st.lists(json_values, min_size=1, max_size=4))
def test_any_json_shaped_stream_is_classified_not_crashed(scripted, api, events):
    scripted.head, scripted.body = APIS[api], as_stream(api, events)
    row = one_request(scripted.server.url, api)
    assert row["error"] in {ErrorClass.OK, ErrorClass.PROTOCOL, ErrorClass.NO_TOKENS}, row
    assert row["end_ns"] >= row["send_ns"] > 0


@FUZZ
@given(api=st.sampled_from(sorted(APIS)), body=st.binary(max_size=300))
def test_garbage_stream_bytes_are_classified_not_crashed(scripted, api, body):
    scripted.head, scripted.body = APIS[api], body
    row = one_request(scripted.server.url, api)
    assert row["error"] in {ErrorClass.OK, ErrorClass.PROTOCOL, ErrorClass.NO_TOKENS}, row


@FUZZ
@given(response=st.binary(max_size=300))
def test_garbage_instead_of_an_http_response_is_protocol_or_reset(scripted, response):
    scripted.head, scripted.body = b"", response
    row = one_request(scripted.server.url)
    assert row["error"] in {ErrorClass.PROTOCOL, ErrorClass.CONNECTION_RESET,
                            ErrorClass.HTTP_STATUS, ErrorClass.NO_TOKENS, ErrorClass.OK}, row


async def endless_line(server, writer):
    """A stream whose one line never ends: 'data: xxxx...' forever (up to ENDLESS_BYTES)."""
    await server.write(writer, SSE_HEAD + chunk(b"data: {\"choices\": \""))
    piece = chunk(b"x" * 65536)
    while server.bytes_sent < ENDLESS_BYTES:
        await server.write(writer, piece)


async def endless_ndjson_line(server, writer):
    await server.write(writer, UNTIL_CLOSE_HEAD + b'{"response": "')
    piece = b"y" * 65536
    while server.bytes_sent < ENDLESS_BYTES:
        await server.write(writer, piece)


@pytest.mark.parametrize("script, api", [(endless_line, "openai-chat"),
                                         (endless_ndjson_line, "ollama-generate")],
                         ids=["sse", "ndjson"])
def test_an_endless_line_is_cut_off_as_protocol_with_bounded_memory(script, api):
    with BadServer(script) as server:
        row = one_request(server.url, api, timeout=30)
        sent = server.bytes_sent
    assert row["error"] == ErrorClass.PROTOCOL, row
    # the client hung up long before the server's supply ran out: its line buffer is capped
    assert sent < ENDLESS_BYTES // 4


DRIP_INTERVAL_S = 0.005  # the server under test is slow on purpose: its pace, not a wait


async def slow_drip(server, writer):
    """A valid stream, one byte at a time, each byte a little later: never finishes in time."""
    await server.write(writer, SSE_HEAD)
    event = chunk(b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n')
    while True:
        for byte in event:
            await server.write(writer, bytes([byte]))
            await asyncio.sleep(DRIP_INTERVAL_S)


async def stall_mid_stream(server, writer):
    await server.write(writer, SSE_HEAD + chunk(
        b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n'))
    await server.stall()


async def crash_mid_stream(server, writer):
    await server.write(writer, SSE_HEAD + chunk(
        b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n'))
    writer.transport.abort()


@pytest.mark.parametrize("script, expected", [
    (slow_drip, ErrorClass.TIMEOUT), (stall_mid_stream, ErrorClass.TIMEOUT),
    (crash_mid_stream, ErrorClass.CONNECTION_RESET)], ids=["slow-drip", "stall", "crash"])
def test_a_slow_stalled_or_crashing_server_ends_each_request_by_its_timeout(script, expected):
    with BadServer(script) as server:
        row = one_request(server.url, timeout=1.0)
    assert row["error"] == expected, row
    if expected == ErrorClass.TIMEOUT:
        # the recorded latency is the timeout itself, not the time the client gave up
        assert row["end_ns"] - row["intended_ns"] == 1_000_000_000
    assert row["chunks"] >= 1  # the tokens that did arrive are kept
