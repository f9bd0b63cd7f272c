"""Attempt: one request in flight and everything measured about it.

It is the HTTP handler of its request (see executor/http.py): the connection calls it back with
the status, body bytes and the end, and it asks its protocol to interpret the bytes. When the
request ends in any way (complete, failure, timeout, cancel) it settles its error class and token
counts once and calls `on_done(attempt)`, which records it.
"""
from __future__ import annotations

from typing import Callable

from hpcbench.proto.samples import ErrorClass, TokenSource

MAX_WHOLE_BODY_BYTES = 64 * 1024 * 1024   # non-streamed answer; streams are capped per line
# the members read on every request, as globals: Enum attribute access costs ~70 ns in 3.11
_OK, _COUNTED, _SERVER = ErrorClass.OK, TokenSource.COUNTED, TokenSource.SERVER


class Attempt:
    __slots__ = ("req_id", "intended_ns", "send_ns", "end_ns", "deadline_ns", "phase", "slot",
                 "protocol", "stream", "tokens_in", "tokens_out", "token_source", "status",
                 "error", "chunk_times", "buffer", "body_parts", "connection", "finished",
                 "on_done", "discard", "template", "first_reasoning_ns", "first_answer_ns",
                 "reasoning_chunks", "reasoning_tokens")
    # a request that belongs to no conversation (TurnAttempt has its own, per instance): class
    # attributes, so single requests pay nothing for them
    conversation = -1
    turn = -1
    turns = 0

    def __init__(self, req_id: int, intended_ns: int, phase: int, slot: int, protocol,
                 stream: bool, tokens_in_estimate: int, on_done: Callable[["Attempt"], None]):
        self.req_id = req_id
        self.intended_ns = intended_ns
        self.send_ns = 0
        self.end_ns = 0
        self.deadline_ns = 0
        self.phase = phase
        self.slot = slot
        self.protocol = protocol
        self.stream = stream
        self.tokens_in = tokens_in_estimate
        self.tokens_out = 0
        self.token_source = _COUNTED
        self.status = 0
        self.error = _OK
        self.chunk_times: list[int] = []
        self.buffer = b""
        self.body_parts: list[bytes] = []
        self.connection = None
        self.finished = False
        self.on_done = on_done
        self.discard = False
        self.template = None      # OpenAI streams: the content chunk's bytes (protocols.py)
        # reasoning streams: set by `reasoning_chunk` / `answer_chunk`; the fast path of an
        # answer's later chunks (`chunk`) leaves them alone, as the first answer chunk is parsed
        self.first_reasoning_ns = 0
        self.first_answer_ns = 0
        self.reasoning_chunks = 0
        self.reasoning_tokens = -1   # the server's count (usage); -1: it gave none

    @property
    def first_ns(self) -> int:
        return self.chunk_times[0] if self.chunk_times else 0

    @property
    def chunks(self) -> int:
        return len(self.chunk_times)

    # --- called by protocols -------------------------------------------------------------------
    def chunk(self, now: int) -> None:
        self.chunk_times.append(now)

    def reasoning_chunk(self, now: int) -> None:
        """One chunk of reasoning content (`delta.reasoning_content`, Ollama's `thinking`)."""
        if not self.first_reasoning_ns:
            self.first_reasoning_ns = now
        self.reasoning_chunks += 1
        self.chunk_times.append(now)

    def answer_chunk(self, now: int) -> None:
        """A chunk of the answer proper that the protocol parsed (the first one always is)."""
        if not self.first_answer_ns:
            self.first_answer_ns = now
        self.chunk_times.append(now)

    def server_reasoning_tokens(self, count) -> None:
        """The server's count of reasoning tokens among the output tokens, if it gives one."""
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            self.reasoning_tokens = count

    def server_counts(self, tokens_in, tokens_out) -> None:
        if isinstance(tokens_out, int) and not isinstance(tokens_out, bool):
            self.tokens_out = tokens_out
            self.token_source = _SERVER
            if isinstance(tokens_in, int) and not isinstance(tokens_in, bool):
                self.tokens_in = tokens_in

    # --- HTTP handler ----------------------------------------------------------------------------
    def on_head(self, status: int, now: int) -> None:
        self.status = status
        if not 200 <= status < 300:
            self.error = ErrorClass.HTTP_STATUS
            self.discard = True

    def on_body(self, data: bytes, now: int) -> None:
        if self.discard:
            return
        if self.stream:
            self.protocol.feed(self, data, now)
        else:
            self.body_parts.append(data)
            # size checked every 64th read (a read is at most 256 KiB), not on every read
            if len(self.body_parts) % 64 == 0 and \
                    sum(map(len, self.body_parts)) > MAX_WHOLE_BODY_BYTES:
                self.give_up(ErrorClass.PROTOCOL, now)      # no answer is that big

    def on_complete(self, now: int) -> None:
        if self.finished:
            return
        if not self.discard:
            if self.stream:
                self.protocol.end(self, now)
            else:
                self.protocol.finish(self, b"".join(self.body_parts), now)
        self._end(now)

    def on_failure(self, error: ErrorClass, now: int) -> None:
        if self.finished:
            return
        self.error = error
        self._end(now)

    # --- called by the engine --------------------------------------------------------------------
    def time_out(self) -> None:
        """The per-request timeout elapsed (the engine's timer, Trial._expire): the recorded
        end is the deadline itself."""
        self._abandon(ErrorClass.TIMEOUT, self.deadline_ns)

    def cancel(self, now: int) -> None:
        self._abandon(ErrorClass.CANCELLED, now)

    def give_up(self, error: ErrorClass, now: int) -> None:
        """End the request now (its protocol found the answer unusable) and drop the connection."""
        self._abandon(error, now)

    def _abandon(self, error: ErrorClass, end_ns: int) -> None:
        if self.finished:
            return
        self.finished = True
        if self.connection is not None and self.connection.handler is self:
            self.connection.abandon()
        self.error = error
        self._settle(end_ns)

    def _end(self, now: int) -> None:
        self.finished = True
        if self.error == _OK and not self.chunk_times:
            self.error = ErrorClass.NO_TOKENS
        self._settle(now)

    def _settle(self, end_ns: int) -> None:
        self.end_ns = end_ns
        if self.token_source != _SERVER:
            self.tokens_out = len(self.chunk_times)
        if self.reasoning_tokens < 0 or self.token_source != _SERVER:
            self.reasoning_tokens = self.reasoning_chunks
        self.reasoning_tokens = min(self.reasoning_tokens, self.tokens_out)
        # drop references that form cycles (connection -> handler)
        self.body_parts = self.buffer = self.connection = None
        self.on_done(self)


class TurnAttempt(Attempt):
    """One turn of a conversation: an Attempt that also keeps every byte of its answer, so the
    answer's text can be sent back in the next turn's history (`WireProtocol.answer_text`)."""

    __slots__ = ("conversation", "turn", "turns", "talk", "answer", "answer_bytes")

    def __init__(self, req_id: int, intended_ns: int, phase: int, slot: int, protocol,
                 stream: bool, tokens_in_estimate: int, on_done: Callable[["Attempt"], None],
                 talk):
        super().__init__(req_id, intended_ns, phase, slot, protocol, stream,
                         tokens_in_estimate, on_done)
        # the conversation (executor/conversations.py Talk) and where in it this turn is
        self.talk = talk
        self.conversation, self.turn, self.turns = talk.number, talk.turn, talk.turns
        self.answer: list[bytes] = []
        self.answer_bytes = 0

    def on_body(self, data: bytes, now: int) -> None:
        if not self.discard:
            self.answer.append(data)
            self.answer_bytes += len(data)
            if self.answer_bytes > MAX_WHOLE_BODY_BYTES:   # no answer is that big
                self.give_up(ErrorClass.PROTOCOL, now)
                return
        super().on_body(data, now)
