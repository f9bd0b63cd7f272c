"""Optional push of the monitor's metrics to a Prometheus Pushgateway (`--enable-monitoring`).

Pushes replace this node's group (job `hpcbench-monitor`, grouping key `instance` = node), so the
gateway always holds each node's latest values. A failed push is counted and reported once per
outage on stderr; it never stops sampling.
"""
from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, push_to_gateway
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

JOB = "hpcbench-monitor"
DEFAULT_PORT = 9091


def gateway_address(node: str) -> str:
    """`HOST`, `HOST:PORT` (the reference's --pushgateway-node) or a URL (recipes) -> address."""
    if node.startswith(("http://", "https://")) or ":" in node.rsplit("]", 1)[-1]:
        return node
    return f"{node}:{DEFAULT_PORT}"


class Pusher:
    def __init__(self, gateway: str, instance: str, collector: Collector, every_s: float) -> None:
        self.gateway = gateway_address(gateway)
        self.instance = instance
        self.every_s = every_s
        self.failures = 0
        self._registry = CollectorRegistry()
        self._registry.register(collector)
        self._next = 0.0
        self._failing = False

    def push_if_due(self, force: bool = False) -> None:
        """Push when `every_s` has passed since the last push (or now, with `force`)."""
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.every_s
        try:
            push_to_gateway(self.gateway, job=JOB, registry=self._registry,
                            grouping_key={"instance": self.instance}, timeout=5)
        except OSError as error:  # URLError and HTTP errors are OSErrors
            self.failures += 1
            if not self._failing:
                log.warning("push to Pushgateway %s failed (%s); sampling goes on, retrying every "
                            "push interval", self.gateway, error)
            self._failing = True
            return
        if self._failing:
            log.info("Pushgateway %s accepts pushes again", self.gateway)
        self._failing = False
