"""TCP connections that know when each read's bytes reached this host: the kernel's receive stamp.

Why not asyncio's transports (uvloop's included): they read with recv(), which drops ancillary
data, so a program could only stamp a read when its event loop got round to it. A busy loop, or
a process the OS had not scheduled yet, then added its own delay to every time it measured: a
load generator's to the latency it reports, a server's to when a request arrived. With
SO_TIMESTAMPNS the kernel stamps each packet as it is received (on the loopback, inside the
sender's own send call) and `SocketTransport` hands every read to its protocol with that stamp
on `time.perf_counter_ns()`'s timeline. A read that takes several packets at once carries the
latest one's stamp (TCP reports the last packet read). Without the option, or for a packet the
kernel did not stamp, the stamp is taken at the read.

Used by the executor (`executor/http.py`: when each token arrived) and the simulator
(`servers/simulator/transport.py`: when each request arrived, for ground truth). The protocol
object gets `connection_made(transport)`, `data_received(data, arrived_ns)`,
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


class StreamProtocol(Protocol):
    def connection_made(self, transport: "SocketTransport") -> None: ...
    def data_received(self, data: bytes, arrived_ns: int) -> None: ...
    def eof_received(self) -> bool | None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...


class RealtimeOffset:
    """CLOCK_REALTIME minus perf_counter's clock (CLOCK_MONOTONIC), to put the kernel's receive
    stamps (wall-clock time) on perf_counter's timeline. Both clocks are slewed alike, so the
    offset only moves when the wall clock is stepped: it is re-measured once a second
    (`expires_ns`, perf_counter time). Each measurement keeps the tightest of a few
    back-to-back reading pairs, since a thread switch between the two reads would skew it (by
    milliseconds, under GIL contention)."""

    REFRESH_NS = 1_000_000_000
    TRIES = 8

    def __init__(self) -> None:
        self.value = 0
        self.expires_ns = -1

    def refresh(self, now_ns: int) -> None:
        best = None
        for _ in range(self.TRIES):
            before = time.perf_counter_ns()
            wall = time.time_ns()
            spread = time.perf_counter_ns() - before
            if best is None or spread < best[0]:
                best = (spread, wall - before - spread // 2)
        self.value, self.expires_ns = best[1], now_ns + self.REFRESH_NS


REALTIME_OFFSET = RealtimeOffset()
_perf_ns = time.perf_counter_ns
_timespec = TIMESPEC.unpack_from


def arrival_ns(ancillary: list, now: int) -> int:
    """The kernel's receive stamp in a read's ancillary data as a perf_counter_ns time, or
    `now` (the read's own time) if it has none. Runs once per read: kept to a few operations."""
    for level, kind, payload in ancillary:
        if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET and len(payload) == 16:
            offset = REALTIME_OFFSET
            if now > offset.expires_ns:
                offset.refresh(now)
            seconds, nanoseconds = _timespec(payload)
            wall = seconds * 1_000_000_000 + nanoseconds
            stamped = wall - offset.value
            if stamped < now - offset.REFRESH_NS:   # waited a second, or the wall clock was
                offset.refresh(now)                   # stepped back: measure again to be sure
                stamped = wall - offset.value
            return stamped if stamped < now else now
    return now


class SocketTransport:
    """One TCP connection (accepted or opened): non-blocking reads handed over with their
    stamps, writes buffered when the kernel takes only part."""

    __slots__ = ("_loop", "_sock", "_fd", "_protocol", "_pending", "_closing", "_lost")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: StreamProtocol) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # each token goes at once
        self._loop, self._sock, self._fd, self._protocol = loop, sock, sock.fileno(), protocol
        self._pending = bytearray()   # bytes the kernel did not take yet
        self._closing = False
        self._lost = False
        loop.add_reader(self._fd, self._readable)   # first: connection_made may close at once
        protocol.connection_made(self)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self._sock.recvmsg(READ_SIZE, ANCILLARY_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._drop(error)
            return
        try:
            if data:
                now = _perf_ns()
                self._protocol.data_received(data,
                                             arrival_ns(ancillary, now) if ancillary else now)
                return
            self._loop.remove_reader(self._fd)
            if not self._protocol.eof_received():
                self.close()
        except Exception as error:   # a protocol bug: reported, and the connection ends
            self._loop.call_exception_handler({"message": "protocol failed on received data",
                                               "exception": error, "transport": self})
            self._drop(error)

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

    def _drop(self, error: Exception | None) -> None:
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
        protocol, self._protocol = self._protocol, None   # no transport <-> protocol cycle left
        protocol.connection_lost(error)


def hold_kernel_stamps(timeout_s: float = 1.0) -> socket.socket | None:
    """A socket that keeps the kernel's receive stamping switched on while it is open (close it
    when done), returned once stamping is on; None where the kernel does not stamp.

    Linux switches stamping on system-wide through a deferred work item when the first socket
    asks for it, and off again when the last one closes, so packets right after may go
    unstamped: this loops a datagram to itself until one comes back with a stamp. Where that
    failed once, later calls return None at once instead of waiting again."""
    global _STAMPS_UNAVAILABLE
    if _STAMPS_UNAVAILABLE:
        return None
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        probe.bind(("127.0.0.1", 0))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            probe.settimeout(left)
            probe.sendto(b"?", probe.getsockname())
            _, ancillary, _, _ = probe.recvmsg(1, ANCILLARY_SPACE)
            if ancillary:
                return probe
            time.sleep(0.001)   # the kernel's work queue has not run yet
    except OSError:
        pass
    probe.close()
    _STAMPS_UNAVAILABLE = True
    return None


_STAMPS_UNAVAILABLE = False


async def connect(loop: asyncio.AbstractEventLoop, protocol_factory: Callable[[], StreamProtocol],
                  host: str, port: int) -> StreamProtocol:
    """Open a TCP connection with kernel receive stamps; its protocol once connected. Each
    address the name resolves to is tried in turn, as `loop.create_connection` does (e.g.
    `localhost` as ::1, then 127.0.0.1); raises what the last attempt raised
    (ConnectionRefusedError, ...) or socket.gaierror."""
    addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for number, (family, kind, proto, _, address) in enumerate(addresses, 1):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)   # sock_connect needs it
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:   # not Linux: stamps are taken at the read
                pass
            await loop.sock_connect(sock, address)
            protocol = protocol_factory()
            SocketTransport(loop, sock, protocol)
            return protocol
        except OSError:
            sock.close()
            if number == len(addresses):
                raise
        except BaseException:
            sock.close()
            raise
    raise OSError(f"{host} resolves to no address")
