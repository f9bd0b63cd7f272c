"""RESP (the Redis protocol): the executor's proof that a service need not speak HTTP.

Requests are Redis commands over the same keep-alive pool as HTTP (`ConnectionPool` with
`RespConnection`), and each reply goes through the same `Attempt` as an HTTP answer: the reply
is one chunk (its arrival is the "first token"), an error reply (`-ERR ...`) counts as a server
error (ErrorClass.HTTP_STATUS, the class for "the server answered with a failure"), and samples
reach the aggregator through the same recorder and sinks.

The workload alternates `SET hpcbench:<executor>:<n> <prompt text>` and `GET` of the key just
set, so both a write and a read path are measured and value sizes follow the dataset.
"""
from __future__ import annotations

from hpcbench.executor.http import HttpConnection, now_ns
from hpcbench.executor.wire import FramedProtocol, RequestInput
from hpcbench.proto.samples import ErrorClass

CRLF = b"\r\n"


def encode_command(*words: str | bytes) -> bytes:
    """A RESP array of bulk strings: the form every Redis command takes on the wire."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word.encode() if isinstance(word, str) else word
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def reply_end(data: bytes, start: int = 0) -> int:
    """Index just past the one complete RESP2 reply at `start`, or -1 if more bytes are needed.

    Raises ValueError on a byte that starts no RESP type.
    """
    line_end = data.find(CRLF, start)
    if line_end < 0:
        return -1
    kind, header = data[start:start + 1], data[start + 1:line_end]
    after = line_end + 2
    if kind in (b"+", b"-", b":"):
        return after
    if kind == b"$":
        size = int(header)
        if size < 0:
            return after                       # null bulk string
        return after + size + 2 if len(data) >= after + size + 2 else -1
    if kind == b"*":
        position = after
        for _ in range(max(int(header), 0)):
            position = reply_end(data, position)
            if position < 0:
                return -1
        return position
    raise ValueError(f"not a RESP reply: {data[start:start + 16]!r}")


class RespConnection(HttpConnection):
    """A pooled connection that frames one RESP reply per request instead of HTTP messages."""

    def _reset_message(self) -> None:
        self._reply = b""
        self._keep_alive = True

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.pool.forget(self)
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.on_failure(ErrorClass.CONNECTION_RESET, now_ns())

    def data_received(self, data: bytes, now: int) -> None:
        handler = self.handler
        if handler is None:           # bytes nobody asked for: the connection is unusable
            self.transport.abort()
            return
        self._reply += data
        try:
            end = reply_end(self._reply)
        except ValueError:
            self._fail(ErrorClass.PROTOCOL, now)
            return
        if end < 0:
            return
        if end != len(self._reply):   # a second reply we did not ask for
            self._fail(ErrorClass.PROTOCOL, now)
            return
        handler.on_head(200, now)
        handler.on_body(self._reply, now)
        self._finish(now)


class RespProtocol(FramedProtocol):
    """api "resp": commands built from the dataset's prompts, one chunk per reply."""

    scheme = "redis"
    connection_class = RespConnection

    def request(self, ask: RequestInput) -> bytes:
        """Even prompts SET a key to the prompt's text, odd ones GET the key set before."""
        key = f"hpcbench:{ask.executor_index}:{ask.index // 2}"
        if ask.index % 2 == 0:
            return encode_command("SET", key, ask.prompt)
        return encode_command("GET", key)

    def feed(self, attempt, data: bytes, now: int) -> None:
        """`data` is one whole reply (RespConnection frames it)."""
        if data[:1] == b"-":
            attempt.error = ErrorClass.HTTP_STATUS
        else:
            attempt.chunk(now)

    def finish(self, attempt, body: bytes, now: int) -> None:
        self.feed(attempt, body, now)
