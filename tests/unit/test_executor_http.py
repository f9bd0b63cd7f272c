"""The executor's HTTP client and stream parsers on exact bytes: a scripted server on a real
socket answers with hand-written responses sent in small pieces (so heads, chunk-size lines
and SSE lines arrive split), covering what the simulator never sends: SSE comments and
keep-alives, empty-text chunks, chunk extensions and trailers, read-until-close bodies and
malformed streams."""
from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest
import uvloop

from hpcbench.common.stamped_socket import connect
from hpcbench.executor.config import LoadConfig
from hpcbench.executor.engine import run_trial
from hpcbench.executor.sinks import MemorySink
from hpcbench.proto.samples import ErrorClass, TokenSource
from hpcbench.servers.simulator import start_simulator
from tests.support.executor_runs import rows, run_load
from tests.support.scripted_http import ScriptedServer


def chunked(*pieces: bytes, extension: bytes = b"", trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), extension, p) for p in pieces)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n" + trailer + b"\r\n")


def sse(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chat_delta(text, finish=None):
    return sse({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
                "usage": None})


@pytest.fixture
def scripted():
    servers = []

    def start(responses, **kwargs):
        server = ScriptedServer(responses, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def one(server, **workload):
    stats, batches = run_load(server.url, max_requests=1, **workload)
    table = rows(batches)
    return {name: column[0] for name, column in table.items()}, batches


def test_sse_comments_keepalives_empty_text_and_usage_only_chunk(scripted):
    stream = chunked(
        b": keep-alive comment\n\n",
        sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                          "finish_reason": None}]}),     # vLLM's role chunk: not a token
        chat_delta("Hel"),
        b"event: ping\n\n" + b":\n\n",
        chat_delta(""),                                # empty text: still a token chunk
        chat_delta("lo"),
        sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}),
        sse({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}),
        b"data: [DONE]\n\n")
    row, batches = one(scripted([stream]))
    assert row["error"] == ErrorClass.OK and row["status"] == 200
    assert row["chunks"] == 3 and len(batches[0].itl_ns) == 2
    assert (row["tokens_out"], row["tokens_in"]) == (3, 12)
    assert row["token_source"] == TokenSource.SERVER


def test_without_usage_tokens_are_counted_chunks(scripted):
    stream = chunked(chat_delta("a"), chat_delta("b"), b"data: [DONE]\n\n",
                     extension=b";name=value", trailer=b"X-Trailer: 1\r\n")
    row, _ = one(scripted([stream]))
    assert row["error"] == ErrorClass.OK
    assert (row["chunks"], row["tokens_out"]) == (2, 2)
    assert row["token_source"] == TokenSource.COUNTED


def test_completions_text_chunks_and_a_finish_only_chunk(scripted):
    def choice(text, finish=None):
        return sse({"choices": [{"index": 0, "text": text,
                                                             "finish_reason": finish}]})
    stream = chunked(choice("x"), choice(""), choice("", "length"), b"data: [DONE]\n\n")
    row, _ = one(scripted([stream]), api="openai-completions")
    assert row["chunks"] == 2 and row["error"] == ErrorClass.OK


def test_ndjson_body_read_until_close_without_final_newline(scripted):
    lines = [{"response": "a", "done": False}, {"response": "", "done": False},
             {"response": "", "done": True, "eval_count": 2, "prompt_eval_count": 4}]
    body = b"\n".join(json.dumps(line).encode() for line in lines)
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n" + body
    server = scripted([response], close_after=True)
    row, _ = one(server, api="ollama-generate")
    assert row["error"] == ErrorClass.OK
    assert (row["chunks"], row["tokens_out"], row["tokens_in"]) == (2, 2, 4)


def test_keep_alive_reuses_one_connection(scripted):
    stream = chunked(chat_delta("a"), b"data: [DONE]\n\n")
    server = scripted([stream] * 3)
    stats, batches = run_load(server.url, max_requests=3)
    assert stats.ok == 3 and server.connections == 1


def test_a_reused_connection_closed_before_answering_is_retried_once(scripted):
    stream = chunked(chat_delta("a"), b"data: [DONE]\n\n")
    server = scripted([stream, None, stream])
    stats, batches = run_load(server.url, max_requests=2)
    assert stats.ok == 2 and server.connections == 2


def test_a_fresh_connection_closed_before_answering_is_a_reset(scripted):
    row, _ = one(scripted([None]))
    assert row["error"] == ErrorClass.CONNECTION_RESET and row["status"] == 0


@pytest.mark.parametrize("response", [
    chunked(b"data: {not json\n\n"),
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"HTTX/1.1 two hundred\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
    chunked(sse({"error": {"message": "overloaded"}})),
    chunked(sse({"choices": True}), chat_delta("a")),
    chunked(sse([1, 2]), chat_delta("a")),
    chunked(sse({"choices": [{"delta": "text"}], "usage": [3]}), chat_delta("a")),
], ids=["bad-json", "bad-chunk-size", "bad-status-line", "bad-length", "error-event",
        "choices-not-a-list", "event-not-an-object", "delta-and-usage-not-objects"])
def test_malformed_responses_are_protocol_errors(scripted, response):
    row, _ = one(scripted([response]))
    assert row["error"] == ErrorClass.PROTOCOL


def test_a_200_with_an_empty_stream_is_no_tokens(scripted):
    row, _ = one(scripted([chunked(b"data: [DONE]\n\n")]))
    assert row["error"] == ErrorClass.NO_TOKENS and row["status"] == 200


def test_connection_closed_mid_stream_is_a_reset_keeping_the_tokens(scripted):
    partial = chunked(chat_delta("a"), chat_delta("b"))[:-5]   # cut before the last chunk
    row, _ = one(scripted([partial], close_after=True))
    assert row["error"] == ErrorClass.CONNECTION_RESET and row["chunks"] == 2


def test_itl_gaps_are_differences_of_chunk_arrival_times(scripted):
    stream = chunked(*(chat_delta(str(i)) for i in range(5)), b"data: [DONE]\n\n")
    row, batches = one(scripted([stream], piece=4096))
    gaps = batches[0].itl_ns
    assert len(gaps) == 4 and np.all(gaps >= 0)
    assert row["first_ns"] + gaps.sum() <= row["end_ns"]


def test_batch_sends_a_list_of_prompts_in_one_completions_request(scripted):
    def choice(index, text):
        return sse({"choices": [{"index": index, "text": text,
                                                       "finish_reason": None}]})
    stream = chunked(choice(0, "a"), choice(1, "b"), choice(2, "c"),
                     sse({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}),
                     b"data: [DONE]\n\n")
    server = scripted([stream])
    row, _ = one(server, api="openai-completions", batch=3, max_tokens=5,
                 dataset={"input_tokens": 3, "output_tokens": 8})
    (body,) = server.bodies
    assert isinstance(body["prompt"], list) and len(body["prompt"]) == 3
    assert all(len(prompt.split()) == 3 for prompt in body["prompt"])
    assert body["max_tokens"] == 5                  # the recipe's max_tokens caps the dataset
    assert (row["chunks"], row["tokens_out"], row["tokens_in"]) == (3, 3, 9)


def test_a_service_plugins_request_extras_go_into_every_body(scripted):
    stream = chunked(chat_delta("a"), b"data: [DONE]\n\n")
    server = scripted([stream])
    config = LoadConfig.from_workload({"model": "m", "duration": 0, "max_requests": 1},
                                      server.url, request_extras={"priority": 3})
    uvloop.run(run_trial(config, MemorySink()))
    assert server.bodies[0]["priority"] == 3 and server.bodies[0]["model"] == "m"


def test_a_line_that_never_ends_is_cut_off_as_protocol(scripted):
    from hpcbench.executor.protocols import MAX_LINE_BYTES

    endless = b"data: {" + b"x" * (MAX_LINE_BYTES + 65536)
    server = scripted([chunked(*(endless[i:i + 65536] for i in range(0, len(endless), 65536)))],
                      piece=65536)
    row, _ = one(server)
    assert row["error"] == ErrorClass.PROTOCOL


def test_a_whole_answer_beyond_the_size_cap_is_cut_off_as_protocol(scripted):
    from hpcbench.executor.attempt import MAX_WHOLE_BODY_BYTES

    size = MAX_WHOLE_BODY_BYTES + 2 * 2**20
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
    server = scripted([head + b"{" + b" " * (size - 1)], piece=2**20)
    row, _ = one(server, stream=False)
    assert row["error"] == ErrorClass.PROTOCOL


def _compact(obj) -> bytes:
    """An SSE event as vLLM writes it: JSON without spaces (what the byte templates match)."""
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() \
        + b"\n\n"


def _chat_event(text, finish=None, usage=None, role=False, chunk_id="c1"):
    delta = {"role": "assistant", "content": text} if role else {"content": text}
    return _compact({"id": chunk_id, "object": "chat.completion.chunk", "model": "m",
                     "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                  "finish_reason": finish}], "usage": usage})


def _completion_event(text, finish=None):
    return _compact({"id": "c1", "choices": [{"index": 0, "text": text, "logprobs": None,
                                              "finish_reason": finish}], "usage": None})


TEMPLATE_STREAMS = {
    "openai-chat": [
        _chat_event("", role=True), _chat_event("Hel"), _chat_event("lo"), _chat_event(""),
        _chat_event('say "hi"'), _chat_event("back\\slash"), _chat_event("é"),
        _chat_event("tab\there"), _chat_event("x", chunk_id="c2"), _chat_event("y"),
        _chat_event("", finish="stop"), _chat_event("z", finish="stop"),
        _chat_event("w", usage={"prompt_tokens": 3, "completion_tokens": 11}),
        _compact({"id": "c1", "error": {"message": "boom"}}), _chat_event("v"),
        b'data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
        b'"delta":{"content":"u"},"logprobs":null,"finish_reason":null}],"usage":null\n\n',
        b"data: [DONE]\n\n"],
    "openai-completions": [
        _completion_event("a"), _completion_event("b"), _completion_event(""),
        _completion_event("", "length"), _completion_event('q"'), _completion_event("c"),
        b"data: [DONE]\n\n"],
}


@pytest.mark.parametrize("api", sorted(TEMPLATE_STREAMS))
@pytest.mark.parametrize("reads", ["one event per read", "all events in one read"])
def test_chunks_recognised_by_their_bytes_count_exactly_as_parsed_ones(api, reads):
    """OpenAI content chunks that repeat a parsed chunk's bytes around new plain text are
    counted without parsing (protocols.OpenAIProtocol._template); every variation (escapes,
    non-ASCII, control characters, another id, finish, usage, error, broken JSON) must count
    exactly as a full parse of every event does."""
    from hpcbench.executor.attempt import Attempt
    from hpcbench.executor.protocol_registry import get_protocol
    from hpcbench.executor.protocols import OpenAIProtocol

    class ParseEveryEvent(OpenAIProtocol):
        def _template(self, payload, text):
            return None

    events = TEMPLATE_STREAMS[api]
    outcomes = []
    for protocol in (get_protocol(api), ParseEveryEvent(chat=api == "openai-chat")):
        attempt = Attempt(0, 0, 1, 0, protocol, True, 1, lambda _: None)
        feeds = [(event, now) for now, event in enumerate(events, 1)]
        if reads == "all events in one read":
            feeds = [(b"".join(events), 1)]
        for data, now in feeds:
            protocol.feed(attempt, data, now)
        outcomes.append((list(attempt.chunk_times), attempt.tokens_out, attempt.error))
        if protocol is get_protocol(api):
            assert attempt.template is not None          # the byte path was taken
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][2] == (ErrorClass.PROTOCOL if api == "openai-chat" else ErrorClass.OK)


def test_chunks_after_a_first_chunk_with_the_role_are_recognised_by_their_bytes():
    """The simulator's first chat chunk carries the role and the first text; the chunks after
    it have no role, so the template is learned again from the first of them and the rest of
    the stream is counted without parsing."""
    from hpcbench.executor.attempt import Attempt
    from hpcbench.executor.protocols import OpenAIProtocol

    parsed = []

    class CountParses(OpenAIProtocol):
        def _event(self, attempt, payload, now):
            parsed.append(payload)
            super()._event(attempt, payload, now)

    protocol = CountParses(chat=True)
    attempt = Attempt(0, 0, 1, 0, protocol, True, 1, lambda _: None)
    events = [_chat_event("a", role=True)] + [_chat_event(word) for word in "bcdefgh"]
    for now, event in enumerate(events, 1):
        protocol.feed(attempt, event, now)
    assert attempt.chunk_times == list(range(1, len(events) + 1))
    assert len(parsed) == 2                 # the role chunk and the first chunk after it


class _TwoAddressLoop(uvloop.Loop):
    """A loop whose name resolution gives a refused address first, then the real one: what
    `localhost` resolving to ::1 before 127.0.0.1 looks like to a client."""

    refused_port = serving_port = 0

    async def getaddrinfo(self, host, port, **kwargs):
        if host != "server.test":    # sock_connect resolves its numeric address here too
            return await super().getaddrinfo(host, port, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", self.refused_port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", self.serving_port))]


def test_a_connection_tries_each_address_the_name_resolves_to():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused_port = closed.getsockname()[1]      # bound, never listening: refused
        with start_simulator(mode="fixed", ttft_ms=0, itl_ms=0) as sim:
            _TwoAddressLoop.refused_port, _TwoAddressLoop.serving_port = refused_port, sim.port

            class Probe:
                def connection_made(self, transport):
                    self.transport = transport

                def connection_lost(self, exc):
                    pass

            async def open_one():
                probe = await connect(asyncio.get_running_loop(), Probe, "server.test", 1)
                peer = probe.transport._sock.getpeername()[1]
                probe.transport.abort()
                return peer

            with asyncio.Runner(loop_factory=_TwoAddressLoop) as runner:
                assert runner.run(open_one()) == sim.port


def test_a_protocol_that_fails_on_received_data_ends_its_connection():
    """As with asyncio's transports: the error is reported to the loop, the connection closes
    and the protocol hears why, instead of a half-parsed connection staying open."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        async def main():
            loop = asyncio.get_running_loop()
            reported = []
            loop.set_exception_handler(lambda _, context: reported.append(context["exception"]))
            lost = loop.create_future()

            class Broken:
                def connection_made(self, transport):
                    pass

                def data_received(self, data, now):
                    raise ValueError("a parser bug")

                def connection_lost(self, exc):
                    lost.set_result(exc)

            await connect(loop, Broken, "127.0.0.1", server.getsockname()[1])
            peer, _ = server.accept()
            with peer:
                peer.sendall(b"HTTP/1.1 200 OK\r\n")
                error = await asyncio.wait_for(lost, 10)
                peer.settimeout(10)
                return error, reported, peer.recv(1)

        error, reported, after = uvloop.run(main())
    assert isinstance(error, ValueError) and reported == [error]
    assert after == b""      # the executor's side is closed
