"""TCP serving that knows when each read's bytes reached this host (the kernel's receive stamp).

Why not `loop.create_server`: its transports read with recv(), which drops ancillary data, so the
earliest arrival time a server could know was when its own event loop got round to reading. For a
single-threaded server that is busy writing other streams' tokens, a request may wait in the
socket buffer for a millisecond; ground truth then called that wait client-added time. With
`timestamps=True`, SO_TIMESTAMPNS makes the kernel stamp each packet as it is received (on
loopback, inside the sender's own send call), and every `data_received` gets that stamp converted
to `time.perf_counter_ns()`: the wait in the buffer counts as server time, as on any server.
A read that takes several packets at once carries the latest one's stamp (TCP reports the last
packet read), which errs towards less server time. Without the option (or for a packet the kernel
did not stamp) the stamp is taken at the read.

The protocol object gets `connection_made(transport)`, `data_received(data, arrived_ns)`,
`eof_received() -> keep_open` and `connection_lost(exc)`; the transport offers `write`, `close`
(after pending writes), `abort` and `is_closing`, with asyncio's semantics.
"""
from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Callable, Protocol

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)   # Linux; not named by Python 3.11
TIMESPEC = struct.Struct("@qq")
ANCILLARY_SPACE = socket.CMSG_SPACE(TIMESPEC.size)
READ_SIZE = 64 * 1024   # below glibc's mmap threshold: one read is a heap allocation
ACCEPTS_PER_WAKE = 64


class StreamProtocol(Protocol):
    def connection_made(self, transport: "SocketTransport") -> None: ...
    def data_received(self, data: bytes, arrived_ns: int) -> None: ...
    def eof_received(self) -> bool | None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...


class RealtimeOffset:
    """CLOCK_REALTIME minus perf_counter's clock (CLOCK_MONOTONIC), to put the kernel's receive
    stamps (wall-clock time) on perf_counter's timeline. Both clocks are slewed alike, so the
    offset only moves when the wall clock is stepped: it is re-measured once a second. Each
    measurement keeps the tightest of a few back-to-back reading pairs, since a thread switch
    between the two reads would skew it (by milliseconds, under GIL contention)."""

    REFRESH_NS = 1_000_000_000
    TRIES = 8

    def __init__(self) -> None:
        self._offset = 0
        self._measured_at = None

    def at(self, now_ns: int) -> int:
        if self._measured_at is None or now_ns - self._measured_at > self.REFRESH_NS:
            best = None
            for _ in range(self.TRIES):
                before = time.perf_counter_ns()
                wall = time.time_ns()
                spread = time.perf_counter_ns() - before
                if best is None or spread < best[0]:
                    best = (spread, wall - before - spread // 2)
            self._offset, self._measured_at = best[1], now_ns
        return self._offset


REALTIME_OFFSET = RealtimeOffset()


def arrival_ns(ancillary: list) -> int:
    """The kernel's receive stamp of this read as a perf_counter_ns time, or now if none."""
    now = time.perf_counter_ns()
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            stamped = seconds * 1_000_000_000 + nanoseconds - REALTIME_OFFSET.at(now)
            return min(now, stamped)
    return now


class SocketTransport:
    """One accepted connection: non-blocking reads with their stamps, buffered writes."""

    __slots__ = ("_loop", "_sock", "_fd", "_protocol", "_pending", "_closing", "_lost")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: StreamProtocol) -> None:
        self._loop, self._sock, self._fd, self._protocol = loop, sock, sock.fileno(), protocol
        self._pending = bytearray()   # bytes the kernel did not take yet
        self._closing = False
        self._lost = False
        protocol.connection_made(self)
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self._sock.recvmsg(READ_SIZE, ANCILLARY_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._drop(error)
            return
        if data:
            self._protocol.data_received(data, arrival_ns(ancillary))
            return
        self._loop.remove_reader(self._fd)
        if not self._protocol.eof_received():
            self.close()

    def write(self, data: bytes) -> None:
        if self._closing or not data:
            return
        if self._pending:
            self._pending += data
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as error:
            self._drop(error)
            return
        if sent < len(data):
            self._pending += memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._drop(error)
            return
        del self._pending[:sent]
        if not self._pending:
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._finish(None)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; close once what was written has gone out."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if not self._pending:
            self._loop.call_soon(self._finish, None)

    def abort(self) -> None:
        """Close now, dropping unsent bytes."""
        self._drop(None)

    def _drop(self, error: OSError | None) -> None:
        if self._lost:   # the descriptor is closed: its number may be another connection's
            return
        self._closing = True
        self._pending.clear()
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._loop.call_soon(self._finish, error)

    def _finish(self, error: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._sock.close()
        self._protocol.connection_lost(error)


class StampingServer:
    """A listening socket whose connections are served by `SocketTransport`s."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol_factory: Callable[[], StreamProtocol]) -> None:
        self._loop, self._sock, self._factory = loop, sock, protocol_factory
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError:   # out of descriptors: the client waits in the backlog, retried
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            SocketTransport(self._loop, sock, self._factory())

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


def kernel_stamps_ready(timeout_s: float = 1.0) -> bool:
    """Whether the kernel stamps received packets yet. Linux switches stamping on system-wide
    through a deferred work item when the first socket asks for it, so packets right after
    may go unstamped: this loops a datagram to itself until one comes back with a stamp."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            probe.bind(("127.0.0.1", 0))
            probe.settimeout(timeout_s)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                probe.sendto(b"?", probe.getsockname())
                _, ancillary, _, _ = probe.recvmsg(1, ANCILLARY_SPACE)
                if ancillary:
                    return True
                time.sleep(0.001)   # the kernel's work queue has not run yet
    except OSError:
        pass
    return False


def listening_socket(host: str, port: int, reuse_port: bool, timestamps: bool,
                     backlog: int = 4096) -> socket.socket:
    """A bound, listening TCP socket for `host` (name or address, IPv4 or IPv6). With
    `timestamps`, accepted connections inherit SO_TIMESTAMPNS; setting it here, before any
    client connects, also gives the kernel time to switch receive stamping on."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if timestamps:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:   # not Linux: stamps are taken at the read
                pass
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
