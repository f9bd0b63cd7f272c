"""The simulator's listening side: every request it reads carries the kernel's receive stamp.

Why: ground truth once stamped a request's arrival when the simulator's event loop read it, so
a request that waited in the socket buffer while the single-threaded simulator wrote other
streams' tokens had that wait counted as client-added time. With ground truth on, accepted
connections ask for SO_TIMESTAMPNS and are served by `common/stamped_socket.py`'s transport:
the wait counts as server time, as on any server.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

from hpcbench.common.stamped_socket import SO_TIMESTAMPNS, SocketTransport, StreamProtocol

log = logging.getLogger(__name__)

ACCEPTS_PER_WAKE = 64
ACCEPT_RETRY_S = 0.1


class StampingServer:
    """A listening socket whose connections are served by `SocketTransport`s."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol_factory: Callable[[], StreamProtocol]) -> None:
        self._loop, self._sock, self._factory = loop, sock, protocol_factory
        self._starved = False   # told the user that accepting failed (once)
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
            except OSError as error:
                # out of descriptors or memory: the listening socket stays readable, so
                # accepting again at once would spin; clients wait in the backlog meanwhile
                if not self._starved:
                    self._starved = True
                    log.warning("cannot accept connections (%s); retrying every %ss",
                                error.strerror or error, ACCEPT_RETRY_S)
                self._loop.remove_reader(self._sock.fileno())
                self._loop.call_later(ACCEPT_RETRY_S, self._resume_accepting)
                return
            try:
                SocketTransport(self._loop, sock, self._factory())
            except Exception:   # the client went away already, or a factory bug: not ours
                self._loop.remove_reader(sock.fileno())
                sock.close()

    def _resume_accepting(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


def listening_socket(host: str, port: int, reuse_port: bool, timestamps: bool,
                     backlog: int = 4096) -> socket.socket:
    """A bound, listening TCP socket for `host` (name or address, IPv4 or IPv6; "" means
    every interface). A name is bound at its first address only (`localhost` at 127.0.0.1 or
    ::1, as the resolver orders them); clients that try every address, as the executor does,
    reach it either way. With `timestamps`, accepted connections inherit SO_TIMESTAMPNS;
    setting it here, before any client connects, also gives the kernel time to switch
    receive stamping on."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
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
