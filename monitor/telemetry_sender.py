"""PUSH telemetry messages to the coordinator over ZeroMQ without ever stalling the sampler.

A PUSH socket queues up to `high_water_mark` messages while the coordinator is slow or not there
yet; beyond that a message is dropped and counted (the count itself travels in later messages
as `hpcbench_monitor_telemetry_dropped_total`), so no loss is silent. With the session's CURVE
keys (a session whose sockets other machines reach) the socket talks CURVE, as the
coordinator's PULL then demands.
"""
from __future__ import annotations

import zmq

from hpcbench.common import sockets
from hpcbench.common.errors import HpcbenchError, config_error


class TelemetrySender:
    def __init__(self, endpoint: str, high_water_mark: int = 10_000, linger_ms: int = 2_000,
                 curve=None) -> None:
        """`curve`: hpcbench.common.curve.CurveKeys of the session, when it uses CURVE."""
        self._context = zmq.Context()   # its own: terminating it on close flushes the queue
        try:
            self._socket = sockets.connect(zmq.PUSH, endpoint, hwm=high_water_mark,
                                           linger_ms=linger_ms, curve=curve,
                                           context=self._context)
        except HpcbenchError as error:   # a malformed endpoint: name the option it came from
            self._context.term()
            raise config_error(f"--coordinator-telemetry: {error.message}",
                               ["give the coordinator's telemetry address, e.g. "
                                "tcp://10.0.0.1:5556"]) from None
        self.dropped = 0

    def send(self, payload: bytes) -> bool:
        try:
            self._socket.send(payload, zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.dropped += 1
            return False

    def close(self) -> None:
        """Close, giving queued messages up to the linger time to reach the coordinator."""
        self._socket.close()
        self._context.term()
