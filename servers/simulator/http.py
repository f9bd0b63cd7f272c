"""A minimal HTTP/1.1 server protocol: keep-alive, Content-Length and chunked bodies.

Why not aiohttp.web: the simulator is the yardstick for a client targeting thousands of streamed
requests per CPU-second, so the server's own cost per token must be a few microseconds. This
protocol parses a request with a handful of bytes operations and writes each token as one
`transport.write` of one chunk (see docs/simulator.md for the measured comparison).

It runs on `transport.py`, which hands every read over with the time its bytes reached this
host (the kernel's receive stamp, see common/stamped_socket.py). Requests on one connection
are served in order; bytes of a pipelined next request wait in the buffer until the current
response ends. A handler gets a `Request` and an `Exchange` through which it answers exactly
once: `respond(...)`, or `start_stream(...)` + `write_chunk(...)` + `end_stream()`, or
`abort()`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from hpcbench.common.stamped_socket import SocketTransport

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]   # lower-case names
    body: bytes
    # perf_counter_ns when its first bytes reached this host (the kernel's receive stamp, see
    # transport.py): the request's arrival as ground truth sees it
    received_ns: int = 0

    def json(self):
        """The body parsed as a JSON object, or ValueError naming what is wrong."""
        try:
            value = json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"request body is not valid JSON ({error})") from None
        if not isinstance(value, dict):
            raise ValueError("request body must be a JSON object")
        return value


Handler = Callable[[Request, "Exchange"], None]


class Exchange:
    """One response on one connection; it knows whether the client is still there."""

    __slots__ = ("_conn", "_transport", "keep_alive", "head_only", "done", "closed", "on_close")

    def __init__(self, conn: "HttpConnection", keep_alive: bool, head_only: bool = False) -> None:
        self._conn = conn
        self._transport = conn.transport
        self.keep_alive = keep_alive
        self.head_only = head_only   # a HEAD request: same head as GET, no body
        self.done = False
        self.closed = False
        self.on_close: Callable[[], None] | None = None   # called if the client goes away

    def _head(self, status: int, content_type: str, extra: str) -> bytes:
        connection = "keep-alive" if self.keep_alive else "close"
        return (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                f"Content-Type: {content_type}\r\nConnection: {connection}\r\n{extra}").encode()

    def respond(self, status: int, body: bytes, content_type: str = "application/json",
                headers: str = "") -> None:
        """Answer with a Content-Length body (headers: extra 'Name: value\\r\\n' lines)."""
        if self.done or self.closed:
            return
        self._transport.write(self._head(status, content_type, headers)
                              + b"Content-Length: %d\r\n\r\n" % len(body)
                              + (b"" if self.head_only else body))
        self._finish()

    def respond_json(self, status: int, value, headers: str = "") -> None:
        self.respond(status, json.dumps(value).encode(), "application/json", headers)

    def start_stream(self, status: int, content_type: str) -> None:
        """Send the head of a chunked response; each `write_chunk` then goes out at once."""
        if not self.closed:
            self._transport.write(self._head(status, content_type,
                                             "Cache-Control: no-cache\r\n"
                                             "Transfer-Encoding: chunked\r\n\r\n"))

    def write_chunk(self, data: bytes) -> None:
        if not self.closed and data:
            self._transport.write(b"%x\r\n%b\r\n" % (len(data), data))

    def end_stream(self, last: bytes = b"") -> None:
        """Write an optional last chunk and the terminating zero-length chunk in one write."""
        if self.done or self.closed:
            return
        if last:
            self._transport.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(last), last))
        else:
            self._transport.write(b"0\r\n\r\n")
        self._finish()

    def abort(self) -> None:
        """Drop the connection mid-response (a fault, or a server that died)."""
        if not self.done:
            self.done = True
            self.closed = True
            self.on_close = None
            self._transport.abort()

    def _finish(self) -> None:
        self.done = True
        # on_close holds the handler's per-request state (generation -> output -> this
        # exchange): dropping it when the answer is complete leaves no reference cycle, so a
        # finished request is freed by refcount instead of waiting for the cyclic GC
        self.on_close = None
        self._conn.response_finished(self)


class HttpConnection:
    """Parses requests from one TCP connection and hands them to `route(method, path)`."""

    def __init__(self, route: Callable[[str, str], Handler | None],
                 open_connections: set | None = None) -> None:
        self.route = route
        self.open_connections = open_connections   # the server's registry, to close on stop
        self.transport: SocketTransport | None = None
        self.buffer = bytearray()
        self.first_byte_ns = 0  # perf_counter_ns when the buffered request's first bytes came
        self.last_read_ns = 0   # ... and when the latest read's bytes came
        self.current: Exchange | None = None
        self.serving = False   # inside _serve_buffered: a synchronous answer must not recurse
        self.continued = False  # "100 Continue" already sent for the request being received
        self.peer_done = False  # the client sent EOF: close once the current response ends

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.open_connections is not None:
            self.open_connections.add(self)

    def connection_lost(self, exc) -> None:
        if self.open_connections is not None:
            self.open_connections.discard(self)
        current, self.current = self.current, None
        if current is not None and not current.done:
            current.closed = True
            on_close, current.on_close = current.on_close, None   # no cycle left (see _finish)
            if on_close is not None:
                on_close()

    def data_received(self, data: bytes, arrived_ns: int) -> None:
        if not self.buffer:                  # the first bytes of a request
            self.first_byte_ns = arrived_ns
        self.last_read_ns = arrived_ns
        self.buffer += data
        if self.current is None:
            self._serve_buffered()
        elif len(self.buffer) > MAX_HEAD_BYTES + MAX_BODY_BYTES:
            self.transport.abort()   # pipelining more than one request can hold: a runaway client

    def eof_received(self) -> bool | None:
        """A client that shut down its sending side still gets the response in progress."""
        self.peer_done = True
        return True if self.current is not None else None

    def response_finished(self, exchange: Exchange) -> None:
        if exchange is not self.current:
            return
        self.current = None
        if not exchange.keep_alive or self.peer_done:
            self.transport.close()
        elif self.buffer and not self.serving:
            self._serve_buffered()

    def _serve_buffered(self) -> None:
        self.serving = True
        try:
            while self.current is None and self.buffer and not self.transport.is_closing():
                parsed = self._parse()
                if parsed is None:
                    return
                request, keep_alive = parsed
                head_only = request.method == "HEAD"
                exchange = self.current = Exchange(self, keep_alive, head_only)
                handler = self.route("GET" if head_only else request.method, request.path)
                if handler is None:
                    exchange.respond_json(404, {"error": f"no route for {request.method} "
                                                         f"{request.path}"})
                else:
                    try:
                        handler(request, exchange)
                    except Exception as error:  # a handler bug must not kill the connection loop
                        exchange.respond_json(500, {"error": f"simulator error: {error!r}"})
        finally:
            self.serving = False

    def _reject(self, status: int, why: str) -> None:
        self.buffer.clear()
        exchange = self.current = Exchange(self, keep_alive=False)
        exchange.respond_json(status, {"error": why})

    def _await_body(self, headers: dict[str, str]) -> None:
        """Wait for the rest of the body; tell a client that asked first (curl does) to send it."""
        if not self.continued and headers.get("expect", "").lower() == "100-continue":
            self.continued = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    def _parse(self) -> tuple[Request, bool] | None:
        """One complete request from the buffer (consumed), or None if more bytes are needed."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self._reject(431, "request head larger than 64 KiB")
            return None
        try:
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        except ValueError:
            self._reject(400, "malformed HTTP request line or header")
            return None
        body_start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            decoded = _decode_chunked(self.buffer, body_start)
            if decoded is None:
                return self._await_body(headers)
            if decoded == "bad":
                self._reject(400, "malformed chunked request body")
                return None
            body, consumed = decoded
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._reject(400, "Content-Length is not an integer")
                return None
            if length > MAX_BODY_BYTES or length < 0:
                self._reject(413, "request body larger than 16 MiB")
                return None
            if len(self.buffer) < body_start + length:
                return self._await_body(headers)
            body, consumed = bytes(self.buffer[body_start:body_start + length]), body_start + length
        del self.buffer[:consumed]
        received_ns = self.first_byte_ns
        # what is left is a pipelined next request; its bytes came with the latest read or
        # before it, so that read's stamp errs towards less server time, never more
        self.first_byte_ns = self.last_read_ns
        self.continued = False
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        path, _, query = target.partition("?")
        return Request(method, path, query, headers, body, received_ns), keep_alive


def _decode_chunked(buffer: bytearray, start: int):
    """(body, bytes consumed) of a complete chunked body, None if incomplete, "bad" if broken."""
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        except ValueError:
            return "bad"
        if len(body) + size > MAX_BODY_BYTES:
            return "bad"
        chunk_start = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            if buffer[line_end:line_end + 4] == b"\r\n\r\n":
                return bytes(body), line_end + 4
            return None if trailer_end < 0 else (bytes(body), trailer_end + 4)
        if len(buffer) < chunk_start + size + 2:
            return None
        body += buffer[chunk_start:chunk_start + size]
        position = chunk_start + size + 2
