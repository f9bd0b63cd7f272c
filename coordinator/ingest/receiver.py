"""The aggregator's network side: a ZeroMQ PULL socket and a thread that ingests and snapshots.

Executors PUSH sample batches and monitors PUSH telemetry to the same endpoint; the thread tells
them apart by the message's `kind`. Sample batches go to the `Aggregator`; telemetry is checked
and republished on the metrics bus (telemetry topic) and handed to `on_telemetry` (e.g. the
session's energy meter). Every `interval_s` the thread takes a
snapshot, publishes it on the bus and hands it to `on_snapshot` (e.g. the gRPC watch feed).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import msgpack
import zmq

from hpcbench.common import sockets
from hpcbench.coordinator.bus.publisher import BusPublisher
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.proto import samples, telemetry

RECEIVE_HWM = 16   # batches queued per executor in the PULL socket (up to 64 MiB each); beyond
#                    it the executor's own PUSH queue fills and then blocks: nothing is dropped
log = logging.getLogger(__name__)


class AggregatorServer:
    """Bind `endpoint` (tcp://127.0.0.1:0 picks a port) and run the ingest loop in a thread."""

    def __init__(self, aggregator: Aggregator, endpoint: str = "tcp://127.0.0.1:0",
                 bus: BusPublisher | None = None,
                 on_snapshot: Callable[[dict], None] | None = None,
                 context: zmq.Context | None = None,
                 on_telemetry: Callable[[dict], None] | None = None, curve=None):
        """`curve`: hpcbench.common.curve.CurveKeys to accept only keyed pushers."""
        self.aggregator = aggregator
        self.bus = bus
        self.on_snapshot = on_snapshot
        self.on_telemetry = on_telemetry   # e.g. the session's EnergyMeter.observe
        self.telemetry_messages = 0
        self.telemetry_malformed = 0
        self.telemetry_foreign = 0
        # nodes whose telemetry counts: a session's monitor nodes (none until it starts
        # monitors) when its aggregator admits only its own; None (tools): every node's
        self.telemetry_nodes: set[str] | None = set() if aggregator.admitted_only else None
        self.latest_snapshot: dict | None = None
        self._socket, self.endpoint = sockets.bind(
            zmq.PULL, endpoint, hwm=RECEIVE_HWM, max_message_bytes=samples.MAX_MESSAGE_BYTES,
            curve=curve, context=context)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aggregator", daemon=True)

    def start(self) -> str:
        """Start the ingest thread; returns the bound endpoint for executors and monitors."""
        self._thread.start()
        return self.endpoint

    def _loop(self) -> None:
        next_snapshot = time.monotonic() + self.aggregator.interval_s
        while not self._stop.is_set():
            wait_ms = max(int((next_snapshot - time.monotonic()) * 1000), 0)
            if self._socket.poll(min(wait_ms, 100), zmq.POLLIN):
                self._receive_pending()
            now = time.monotonic()
            if now >= next_snapshot:
                # keep the 1 s grid; after a stall start a fresh one instead of a burst of
                # near-empty catch-up snapshots
                next_snapshot += self.aggregator.interval_s
                if next_snapshot <= now:
                    next_snapshot = now + self.aggregator.interval_s
                self._publish_snapshot()
        self._receive_pending()  # what arrived before stop() still counts

    def _receive_pending(self) -> None:
        while True:
            try:
                payload = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self.handle(payload)
            except Exception as error:  # a bug on one message must not stop the data plane
                log.exception("message of %d bytes could not be ingested", len(payload))
                self.aggregator.reject_malformed(f"could not be ingested: {error!r}")

    def handle(self, payload: bytes) -> None:
        """Route one received message; bad ones are counted, never raised."""
        try:
            message = msgpack.unpackb(payload, raw=False, max_bin_len=1 << 30,
                                      max_str_len=1 << 16)
        except Exception as error:  # msgpack raises several unrelated types on garbage
            self.aggregator.reject_malformed(f"not a msgpack message: {error}")
            return
        if isinstance(message, dict) and message.get("kind") == telemetry.KIND:
            self._republish_telemetry(message)
        else:
            self.aggregator.ingest_message(message, payload)

    def _republish_telemetry(self, message: dict) -> None:
        try:
            telemetry.check(message)
        except telemetry.TelemetryError as error:
            self.telemetry_malformed += 1
            self.aggregator.problems.append(f"malformed telemetry: {error}")
            return
        if self.telemetry_nodes is not None and message["node"] not in self.telemetry_nodes:
            self.telemetry_foreign += 1
            self.aggregator.problems.append(f"telemetry of node {message['node'][:64]!r} "
                                            "dropped: no monitor of this session runs there")
            return
        self.telemetry_messages += 1
        if self.on_telemetry is not None:
            try:
                self.on_telemetry(message)
            except Exception:  # a consumer's bug must not stop the data plane
                log.exception("on_telemetry callback failed")
        if self.bus is not None:
            self.bus.telemetry(message)

    def _publish_snapshot(self) -> None:
        try:
            snapshot = self.aggregator.snapshot()
        except Exception:  # keep ingesting; the next interval tries again
            log.exception("snapshot failed")
            return
        snapshot["integrity"]["telemetry_messages"] = self.telemetry_messages
        snapshot["integrity"]["telemetry_malformed"] = self.telemetry_malformed
        snapshot["integrity"]["telemetry_foreign"] = self.telemetry_foreign
        self.latest_snapshot = snapshot
        if self.bus is not None:
            try:
                self.bus.snapshot(snapshot)
            except Exception:  # e.g. the bus already closed during shutdown
                log.exception("snapshot not published on the bus")
        if self.on_snapshot is not None:
            try:
                self.on_snapshot(snapshot)
            except Exception:  # a consumer's bug must not stop aggregation
                log.exception("on_snapshot callback failed")

    def stop(self) -> None:
        """Ingest what is already queued, then stop the thread and close the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._socket.close(linger=0)

    def __enter__(self) -> AggregatorServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
