"""The metrics bus: a ZeroMQ XPUB publisher with a last-value cache, and a subscriber helper.

Why XPUB: with ZMQ_XPUB_VERBOSE the publisher sees every subscription as it arrives, so it
re-sends the newest message of each matching (topic, key) at once: a late subscriber gets the
current state (last snapshot, last lifecycle event of each kind, last telemetry of each node)
before live messages. Sends never block: at the send high-water mark ZeroMQ drops messages for
that slow subscriber only, so the aggregator is never slowed (DESIGN.md section 2).

`BusPublisher` is thread-safe: the aggregator thread, the session thread and the subscription
thread share the socket under one lock (each use is a few microseconds).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator

import zmq

from hpcbench.common import sockets
from hpcbench.proto import bus as contract

SUBSCRIBE_HWM = 1_000     # messages a subscriber's socket holds before it loses some
SUBSCRIPTION_MAX_BYTES = 4096   # a (un)subscription is a topic prefix; longer drops the peer
MAX_BUS_MESSAGE_BYTES = 64 * 1024 * 1024   # a snapshot of a thousand executors is a few MB
SEND_HWM = 1_000          # messages queued per subscriber before that subscriber loses some
_SUBSCRIPTION_POLL_S = 0.02
_REMEMBERED = 4096       # (topic, seq) pairs a subscriber remembers to skip repeated replays
# on close, queued messages (the session's last state and session_end) get this long to reach
# subscribers: with no linger they could be dropped before ZeroMQ's I/O thread sent them
_CLOSE_LINGER_MS = 1000


class BusPublisher:
    """Bind an XPUB socket on `endpoint` (tcp://127.0.0.1:0 picks a port: see `.endpoint`)."""

    def __init__(self, endpoint: str, run: str = "", context: zmq.Context | None = None,
                 curve=None):
        """`curve`: hpcbench.common.curve.CurveKeys to serve only keyed subscribers."""
        self.run = run
        # XPUB_VERBOSE: every subscription reaches us, also repeated ones (each gets the cache)
        self._socket, self.endpoint = sockets.bind(
            zmq.XPUB, endpoint, hwm=SEND_HWM, max_message_bytes=SUBSCRIPTION_MAX_BYTES,
            curve=curve, options={zmq.XPUB_VERBOSE: 1}, context=context)
        self._lock = threading.Lock()
        self._sequence = {topic: 0 for topic in contract.TOPICS}
        self._last: dict[tuple[str, str], tuple[list[bytes], list[bytes]]] = {}
        self._stop = threading.Event()
        self.replays = 0
        self._thread = threading.Thread(target=self._serve_subscriptions, name="bus-lvc",
                                        daemon=True)
        self._thread.start()

    def publish(self, topic: str, data: object, key: str = "") -> int:
        """Send `data` on `topic`; the newest message per (topic, key) is cached for late
        subscribers. Returns the message's sequence number."""
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError("bus publisher is closed")
            seq = self._sequence[topic]
            frames = contract.pack(topic, seq, self.run, time.time_ns(), data)
            self._sequence[topic] = seq + 1
            self._last[(topic, key)] = (frames, [])   # its replay form, made on first replay
            self._send(frames)
        return seq

    def snapshot(self, data: dict) -> int:
        return self.publish(contract.SNAPSHOT, data)

    def telemetry(self, message: dict) -> int:
        return self.publish(contract.TELEMETRY, message, key=str(message.get("node", "")))

    def event(self, data: dict) -> int:
        """A lifecycle event (`contract.event_data`); the newest of each name is replayed to
        late subscribers."""
        return self.publish(contract.EVENT, data, key=data["event"])

    def summary(self, data: dict) -> int:
        return self.publish(contract.SUMMARY, data, key=str(data.get("trial", "")))

    def _send(self, frames: list[bytes]) -> None:
        try:
            self._socket.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            pass  # no subscriber can take it now: a bus message may be lost, never waited on

    def _serve_subscriptions(self) -> None:
        """Replay cached messages matching each new subscription (prefix match, like SUB)."""
        while not self._stop.wait(_SUBSCRIPTION_POLL_S):
            with self._lock:
                if self._stop.is_set():
                    return
                while self._socket.poll(0, zmq.POLLIN):
                    request = self._socket.recv()
                    if request[:1] != b"\x01":
                        continue  # an unsubscription
                    prefix = request[1:]
                    for frames, replay in self._last.values():
                        if frames[0].startswith(prefix):
                            if not replay:   # re-packed once per cached message, not per join
                                replay.extend(contract.as_replay(frames))
                            self._send(replay)
                            self.replays += 1

    def close(self) -> None:
        with self._lock:
            self._stop.set()
        self._thread.join()
        self._socket.close(linger=_CLOSE_LINGER_MS)

    def __enter__(self) -> BusPublisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def subscribe(endpoint: str, topics: Iterable[str] = contract.TOPICS,
              idle_timeout_s: float | None = None,
              context: zmq.Context | None = None, curve=None,
              stop: threading.Event | None = None) -> Iterator[dict]:
    """Yield bus messages (maps, see proto/bus.py) from `endpoint`, current state first.

    Replays of messages this subscriber already received (same topic and seq) are skipped, so
    each message arrives once. Ends when no message came for `idle_timeout_s` (None: never) or
    once `stop` is set (checked at least every 0.2 s); closing the generator closes the socket.
    Messages that break the contract are skipped. `curve`: the session's keys when its bus is
    on CURVE (a subscriber without them hears nothing).
    """
    socket = sockets.connect(zmq.SUB, endpoint, hwm=SUBSCRIBE_HWM, curve=curve, context=context,
                             max_message_bytes=MAX_BUS_MESSAGE_BYTES)
    try:
        for topic in topics:
            socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        seen: deque[tuple[str, int]] = deque(maxlen=_REMEMBERED)
        seen_set: set[tuple[str, int]] = set()
        idle_since = time.monotonic()
        while not (stop is not None and stop.is_set()):
            if not socket.poll(200, zmq.POLLIN):
                if idle_timeout_s is not None and time.monotonic() - idle_since >= idle_timeout_s:
                    return
                continue
            idle_since = time.monotonic()
            try:
                message = contract.unpack(socket.recv_multipart())
            except contract.BusMessageError:
                continue
            identity = (message["topic"], message["seq"])
            if identity in seen_set:
                continue  # a replay of a message this subscriber already has
            if len(seen) == seen.maxlen:
                seen_set.discard(seen[0])
            seen.append(identity)
            seen_set.add(identity)
            yield message
    finally:
        socket.close(linger=0)
