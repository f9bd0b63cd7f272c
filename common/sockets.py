"""Every ZeroMQ socket of hpcbench is made here: one place for the options each plane relies on.

`bind` serves an endpoint (the coordinator's sample PULL, its bus XPUB), `connect` reaches one
(executors' and monitors' PUSH, bus subscribers' SUB). Both set, before the socket is bound or
connected (ZeroMQ ignores most options set later):
- the high-water mark in the socket's direction (a PUSH blocks at it, a PULL stops reading);
- LINGER, how long close() waits for queued messages;
- MAXMSGSIZE on receiving sockets, so a peer cannot make the coordinator allocate without bound
  (a larger message drops its connection);
- CURVE (common/curve.py) when the session has keys: the binding side serves the server key, the
  connecting side needs it, so a peer without the session's keys never completes a handshake.
A bind that fails is E008 and a malformed endpoint E006, each naming the endpoint.
"""
from __future__ import annotations

import zmq

from hpcbench.common.curve import CurveKeys
from hpcbench.common.errors import HpcbenchError, config_error

_SENDS = {zmq.PUSH, zmq.PUB, zmq.XPUB}


def _prepare(kind: int, *, hwm: int, linger_ms: int, max_message_bytes: int | None,
             options: dict[int, int | bytes] | None, context: zmq.Context | None) -> zmq.Socket:
    socket = (context or zmq.Context.instance()).socket(kind)
    socket.setsockopt(zmq.SNDHWM if kind in _SENDS else zmq.RCVHWM, hwm)
    socket.setsockopt(zmq.LINGER, linger_ms)
    if max_message_bytes is not None:
        socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    for option, value in (options or {}).items():
        socket.setsockopt(option, value)
    return socket


def bind(kind: int, endpoint: str, *, hwm: int, linger_ms: int = 0,
         max_message_bytes: int | None = None, curve: CurveKeys | None = None,
         options: dict[int, int | bytes] | None = None,
         context: zmq.Context | None = None) -> tuple[zmq.Socket, str]:
    """A socket of `kind` bound to `endpoint` (port 0 picks one) and the endpoint it got;
    E008 naming the endpoint when it cannot be bound."""
    socket = _prepare(kind, hwm=hwm, linger_ms=linger_ms, max_message_bytes=max_message_bytes,
                      options=options, context=context)
    try:
        if curve is not None:
            socket.curve_server = True
            socket.curve_publickey = curve.server_public.encode("ascii")
            socket.curve_secretkey = curve.server_secret.encode("ascii")
        socket.bind(endpoint)
    except zmq.ZMQError as error:   # an address that is not this node's, a port taken
        socket.close(0)
        raise HpcbenchError("E008", f"cannot listen on {endpoint}: {error}",
                            ("fix: a recipe's security.bind_address must be an address of this "
                             "node (or null); a taken port must be freed",)) from None
    except BaseException:
        socket.close(0)
        raise
    return socket, socket.getsockopt_string(zmq.LAST_ENDPOINT)


def connect(kind: int, endpoint: str, *, hwm: int, linger_ms: int = 0,
            max_message_bytes: int | None = None, curve: CurveKeys | None = None,
            options: dict[int, int | bytes] | None = None,
            context: zmq.Context | None = None) -> zmq.Socket:
    """A socket of `kind` connecting to `endpoint` (E006 when the endpoint is malformed)."""
    socket = _prepare(kind, hwm=hwm, linger_ms=linger_ms, max_message_bytes=max_message_bytes,
                      options=options, context=context)
    try:
        if curve is not None:
            socket.curve_serverkey = curve.server_public.encode("ascii")
            socket.curve_publickey = curve.client_public.encode("ascii")
            socket.curve_secretkey = curve.client_secret.encode("ascii")
        socket.connect(endpoint)
    except zmq.ZMQError as error:   # not an endpoint at all (what a user typed, mostly)
        socket.close(0)
        raise config_error(f"{endpoint!r} is not a ZeroMQ endpoint ({error})",
                           ["give one such as tcp://10.0.0.1:5556 or ipc:///path/to/socket, as "
                            "the session's coordinator.json names it"]) from None
    except BaseException:
        socket.close(0)
        raise
    return socket
