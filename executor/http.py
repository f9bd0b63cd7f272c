"""A minimal HTTP/1.1 client protocol: keep-alive pool, chunked decoding, streaming.

Why not aiohttp: measured against the simulator (docs/design-notes.md), a callback-driven
protocol costs a fraction of the CPU per streamed request, and the executor's CPU is what a
benchmark must not spend. Connections run on `stamped_socket.py`: each `data_received` call
comes with the kernel's receive stamp of its bytes (so a busy executor does not add its own
delay to what it measures) and hands the decoded body bytes of that read to the request's
handler in one call; there is no coroutine, queue or per-byte loop per token.

A handler is any object with `send_ns` and the methods
    on_head(status, now_ns), on_body(data, now_ns), on_complete(now_ns), on_failure(error, now_ns)
and exactly one of on_complete / on_failure is called, unless the handler abandons the
connection first (timeout, cancel) with `HttpConnection.abandon()`.
"""
from __future__ import annotations

import asyncio
import re
import time

from hpcbench.common.errors import config_error
from hpcbench.common.stamped_socket import SocketTransport, connect
from hpcbench.proto.samples import ErrorClass

MAX_HEAD_BYTES = 64 * 1024
MAX_CHUNK_LINE = 1024

_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)        # body framing
_SIZE, _DATA, _CRLF, _TRAILER = range(4)                 # chunked decoder states

now_ns = time.perf_counter_ns


# methods a protocol may use: HEAD is not one (its answer's length has no body to read)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# headers the executor writes itself (the request's framing and identity)
OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection",
                         "user-agent", "x-request-id"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")      # RFC 9110 field name
_PATH = re.compile(r"/[!-~]*")                          # visible ASCII, no space
_VALUE = re.compile(r"[\t -~\x80-\xff]*")               # no control characters


def check_request_line(api: str, method: object, path: object) -> None:
    """E006 naming `api` unless `method` and `path` make a valid request line."""
    if method not in METHODS:
        raise config_error(f"api {api!r} asks for method {method!r}",
                           [f"fix: use one of {', '.join(METHODS)}"])
    if not isinstance(path, str) or not _PATH.fullmatch(path) or "#" in path:
        raise config_error(f"api {api!r} asks for path {path!r}: not a request path",
                           ["fix: a path starts with / and has no spaces, controls or "
                            "fragment; percent-encode names in it (urllib.parse.quote), "
                            "e.g. a workload.model with spaces"])


def check_headers(api: str, headers: object) -> None:
    """E006 naming `api` and the header unless every header is a valid, non-reserved one."""
    if not isinstance(headers, dict):
        raise config_error(f"api {api!r} gives headers as {type(headers).__name__}",
                           ["fix: give headers as a dict of name -> value strings"])
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise config_error(f"api {api!r} gives header name {name!r}",
                               ["fix: a header name is letters, digits and -!#$%&'*+.^_`|~"])
        if name.lower() in OWN_HEADERS:
            raise config_error(f"api {api!r} sets header {name}, which the executor writes "
                               "itself", [f"fix: leave out {', '.join(sorted(OWN_HEADERS))}"])
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise config_error(f"api {api!r} gives header {name} the value {value!r}",
                               ["fix: a header value is a string without line breaks or "
                                "other control characters, in Latin-1"])


def request_start(method: str, host: str, port: int, path: str) -> bytes:
    """Request line and Host header: the part of a request that names its endpoint."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"   # IPv6 in brackets
    return f"{method} {path} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1")


def request_rest(method: str, body: bytes = b"", headers: dict[str, str] | None = None,
                 content_type: str = "application/json") -> bytes:
    """The other headers, the blank line and the body: the part of a request that is the same
    for every endpoint. `headers` are the protocol's own (checked by the engine); a body, or
    any POST or PUT, gets Content-Length and, unless `headers` name one, `content_type`."""
    own = {name.lower() for name in headers} if headers else set()
    head = "User-Agent: hpcbench-executor\r\n" + ("" if "accept" in own else "Accept: */*\r\n")
    if body or method in ("POST", "PUT"):
        if "content-type" not in own:
            head += f"Content-Type: {content_type}\r\n"
        head += f"Content-Length: {len(body)}\r\n"
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    return (head + "\r\n").encode("latin-1") + body


class HttpConnection:
    """One keep-alive connection; serves one request at a time for its pool."""

    def __init__(self, pool: "ConnectionPool") -> None:
        self.pool = pool
        self.transport: SocketTransport | None = None
        self.handler = None
        self.closed = False
        self.served = 0           # responses completed on this connection
        self._request = b""
        self._reset_message()

    def _reset_message(self) -> None:
        self._framing = _HEAD
        self._head = b""
        self._left = 0            # _LENGTH: body bytes left; _CHUNKED: bytes left in the chunk
        self._chunk_state = _SIZE
        self._pending = b""       # partial chunk-size or trailer line
        self._keep_alive = True

    # --- stamped_socket.StreamProtocol ------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def eof_received(self) -> None:
        """The server closed its side: close ours (connection_lost then ends the message)."""

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.pool.forget(self)
        handler, self.handler = self.handler, None
        if handler is None:
            return
        if self._framing == _UNTIL_CLOSE:
            handler.on_complete(now_ns())
        elif self.served and self._framing == _HEAD and not self._head:
            # the server closed this idle keep-alive connection just as we reused it (e.g.
            # uvicorn's 5 s keep-alive timeout): nothing was answered, send it again once
            self.pool.send(self._request, handler)
        else:
            handler.on_failure(ErrorClass.CONNECTION_RESET, now_ns())

    def data_received(self, data: bytes, now: int) -> None:
        handler = self.handler
        if handler is None:           # bytes nobody asked for: the connection is unusable
            self.transport.abort()
            return
        if self._framing == _HEAD:
            data = self._read_head(data, now)
            if not data or self.handler is None:      # typically the head came alone
                return
        framing = self._framing
        if framing == _CHUNKED:
            if self._chunk_state == _SIZE and not self._pending:
                # fast path: the read is exactly one whole chunk (a streamed token, typically)
                line_end = data.find(b"\r\n")
                if line_end > 0:
                    try:
                        chunk = int(data[:line_end], 16)
                    except ValueError:
                        chunk = 0
                    if chunk and line_end + chunk + 4 == len(data):
                        handler.on_body(data[line_end + 2:-2], now)
                        return
            self._read_chunked(data, now, handler)
        elif framing == _LENGTH:
            if len(data) >= self._left:
                body, self._left = data[:self._left], 0
                if body:
                    handler.on_body(body, now)
                self._finish(now)
            else:
                self._left -= len(data)
                handler.on_body(data, now)
        else:
            handler.on_body(data, now)

    # --- requests ---------------------------------------------------------------------------
    def start(self, request: bytes, handler) -> None:
        self.handler = handler
        self._request = request
        handler.send_ns = now_ns()
        self.transport.write(request)

    def abandon(self) -> None:
        """Drop the current request (timeout/cancel): the connection cannot be reused."""
        self.handler = None
        self.closed = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()

    # --- parsing ----------------------------------------------------------------------------
    def _read_head(self, data: bytes, now: int) -> bytes | None:
        """Consume the status line and headers; return the body bytes after them (or None)."""
        buffer = self._head + data if self._head else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._fail(ErrorClass.PROTOCOL, now)
                return None
            self._head = buffer
            return None
        self._head = b""
        lines = buffer[:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            self._fail(ErrorClass.PROTOCOL, now)
            return None
        rest = buffer[end + 4:]
        if 100 <= status < 200:               # interim response: the real one follows
            return self._read_head(rest, now) if rest else None
        length, chunked, close = None, False, parts[0] != b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    self._fail(ErrorClass.PROTOCOL, now)
                    return None
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        self._keep_alive = not close
        self.handler.on_head(status, now)
        if chunked:
            self._framing = _CHUNKED
        elif length is not None:
            self._framing, self._left = _LENGTH, length
            if length == 0:
                self._finish(now)
                return None
        elif status in (204, 304):
            self._finish(now)
            return None
        else:
            self._framing, self._keep_alive = _UNTIL_CLOSE, False
        return rest

    def _read_chunked(self, data: bytes, now: int, handler) -> None:
        if self._pending:
            data, self._pending = self._pending + data, b""
        pieces = []
        position, size = 0, len(data)
        while position < size:
            state = self._chunk_state
            if state == _DATA:
                take = min(self._left, size - position)
                pieces.append(data[position:position + take])
                position += take
                self._left -= take
                if self._left == 0:
                    self._chunk_state, self._left = _CRLF, 2
                continue
            if state == _CRLF:
                take = min(self._left, size - position)
                position += take
                self._left -= take
                if self._left == 0:
                    self._chunk_state = _SIZE
                continue
            line_end = data.find(b"\r\n", position)
            if line_end < 0:
                self._pending = data[position:]
                if len(self._pending) > MAX_CHUNK_LINE:
                    self._fail(ErrorClass.PROTOCOL, now)
                    return
                break
            line = data[position:line_end]
            position = line_end + 2
            if state == _TRAILER:
                if not line:                  # blank line: the message is complete
                    if pieces:
                        handler.on_body(b"".join(pieces), now)
                    self._finish(now)
                    return
                continue
            try:
                chunk = int(line.partition(b";")[0], 16)
            except ValueError:
                self._fail(ErrorClass.PROTOCOL, now)
                return
            if chunk == 0:
                self._chunk_state = _TRAILER
            elif position + chunk + 2 <= size:   # common case: chunk and its CRLF all here
                pieces.append(data[position:position + chunk])
                position += chunk + 2
            else:
                self._chunk_state, self._left = _DATA, chunk
        if pieces:
            handler.on_body(pieces[0] if len(pieces) == 1 else b"".join(pieces), now)

    def _finish(self, now: int) -> None:
        handler, self.handler = self.handler, None
        if handler is None:                # the handler gave up while reading this message
            return
        keep_alive = self._keep_alive
        self.served += 1
        self._reset_message()
        if keep_alive and not self.closed:
            self.pool.release(self)
        else:
            self.closed = True
            self.pool.forget(self)
            self.transport.close()
        handler.on_complete(now)

    def _fail(self, error: ErrorClass, now: int) -> None:
        handler = self.handler
        self.abandon()
        handler.on_failure(error, now)


class ConnectionPool:
    """Keep-alive connections to one host:port; a request takes an idle one or opens one."""

    def __init__(self, host: str, port: int, connection_class: type = HttpConnection) -> None:
        self.host, self.port = host, port
        self.connection_class = connection_class   # executor/resp.py frames RESP instead
        self._idle: list[HttpConnection] = []
        self._open: set[HttpConnection] = set()
        self._connecting: set[asyncio.Task] = set()
        self._closing = False

    def send(self, request: bytes, handler) -> None:
        """Send now on an idle connection, else connect first (connect time is dispatch lag)."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                handler.connection = connection
                connection.start(request, handler)
                return
        task = asyncio.get_running_loop().create_task(self._connect_and_send(request, handler))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect_and_send(self, request: bytes, handler) -> None:
        loop = asyncio.get_running_loop()
        try:
            connection = await connect(loop, lambda: self.connection_class(self),
                                       self.host, self.port)
        except ConnectionRefusedError:
            handler.on_failure(ErrorClass.CONNECTION_REFUSED, now_ns())
            return
        except ConnectionResetError:
            handler.on_failure(ErrorClass.CONNECTION_RESET, now_ns())
            return
        except OSError:                           # unreachable network, unknown host, ...
            handler.on_failure(ErrorClass.OTHER, now_ns())
            return
        self._open.add(connection)
        if handler.finished or self._closing:     # timed out or cancelled while connecting
            self.release(connection)
            return
        handler.connection = connection
        connection.start(request, handler)

    async def prewarm(self, count: int, timeout: float) -> int:
        """Open up to `count` idle connections at once (bounded by `timeout`), so the first
        requests of a trial do not pay for connecting; failures are left to those requests."""
        loop = asyncio.get_running_loop()
        attempts = [loop.create_task(connect(loop, lambda: self.connection_class(self),
                                             self.host, self.port)) for _ in range(count)]
        done, pending = await asyncio.wait(attempts, timeout=timeout)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is None:
                connection = task.result()
                self._open.add(connection)
                self.release(connection)
        return len(self._idle)

    def release(self, connection: HttpConnection) -> None:
        if self._closing:
            connection.transport.close()
        else:
            self._idle.append(connection)

    def forget(self, connection: HttpConnection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    def close(self) -> None:
        """Close every connection and stop pending connects."""
        self._closing = True
        for task in list(self._connecting):
            task.cancel()
        for connection in list(self._open):
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()
