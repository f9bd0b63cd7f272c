"""Prometheus exposition of telemetry messages (proto/telemetry.py), for monitors and coordinator.

`TelemetryCollector` keeps the latest message per node and renders it at scrape time, labelled
with `node` and `run`. The monitor feeds it its own messages; the coordinator can feed it every
node's messages from the telemetry topic and expose the whole allocation on one endpoint.
Names ending in `_total` are counters, other plain names gauges; the parts of a server
histogram (`<name>_bucket{le}`, `_sum`, `_count`; catalogue.SERVER_HISTOGRAMS) are put
together into one Prometheus histogram. With `compat="reference"` it also renders the
reference toolkit's names (monitor/compat.py).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from hpcbench.common.files import write_atomic
from hpcbench.monitor.catalogue import METRICS, SERVER_HISTOGRAMS, histogram_of, is_counter
from hpcbench.monitor.compat import CHOICES, reference_families


class TelemetryCollector(Collector):
    def __init__(self, compat: str = "none") -> None:
        if compat not in CHOICES:
            raise ValueError(f"compat {compat!r} is not one of {CHOICES}")
        self.compat = compat
        self._latest: dict[str, dict] = {}
        self._lock = threading.Lock()

    def update(self, message: dict) -> None:
        """Remember `message` (a checked telemetry map) as its node's latest values."""
        with self._lock:
            self._latest[message["node"]] = message

    def collect(self, instance: bool = True) -> Iterator[Metric]:
        """hpcbench's families, then the reference's when asked for; `instance` is False for
        a Pushgateway push (PushView): the reference's `instance` label then comes from the
        push's grouping key."""
        with self._lock:
            messages = list(self._latest.values())
        families: dict[str, Metric] = {}
        for message in messages:
            base = {"node": message["node"], "run": message["run"]}
            for name, value in message["metrics"].items():
                _add(families, name, base, value)
            for name, labels, value in message["series"]:
                _add(families, name, {**labels, **base}, value)
        for family in families.values():
            if family.type == "histogram":
                family.samples.sort(key=_histogram_order)
        if self.compat == "reference":
            return iter([*families.values(), *reference_families(messages, instance)])
        return iter(families.values())

    def push_view(self) -> "PushView":
        """This collector as a Pushgateway push renders it."""
        return PushView(self)


class PushView(Collector):
    def __init__(self, collector: TelemetryCollector) -> None:
        self._collector = collector

    def collect(self) -> Iterator[Metric]:
        return self._collector.collect(instance=False)


def _add(families: dict[str, Metric], name: str, labels: dict[str, str], value: float) -> None:
    histogram = histogram_of(name)
    if histogram is not None:   # the server's histograms: one Prometheus histogram each
        family = families.get(histogram)
        if family is None:
            family = families[histogram] = Metric(histogram, SERVER_HISTOGRAMS[histogram],
                                                  "histogram")
        family.add_sample(name, labels, value)
        return
    family = families.get(name)
    if family is None:
        kind = "counter" if is_counter(name) else "gauge"
        family_name = name[: -len("_total")] if kind == "counter" else name
        family = families[name] = Metric(family_name, METRICS.get(name, name), kind)
    family.add_sample(name, labels, value)


def _histogram_order(sample) -> tuple:
    """Per label set (node, run): buckets by bound, then _sum and _count, as the text format
    lays a histogram out."""
    labels = {key: value for key, value in sample.labels.items() if key != "le"}
    try:
        bound = float(sample.labels.get("le", "+Inf"))
    except ValueError:   # a bound no server writes: last, rather than no exposition at all
        bound = float("inf")
    part = 0 if sample.name.endswith("_bucket") else 1 if sample.name.endswith("_sum") else 2
    return (sorted(labels.items()), part, bound)


def serve(collector: Collector, host: str, port: int, port_file: Path | None = None) -> tuple:
    """Serve `collector` on http://host:port/metrics in a daemon thread; port 0 picks one.

    Returns (server, bound port). With `port_file`, the bound port is written there (atomically)
    once the server accepts connections, so a parent that asked for port 0 can find it.
    """
    registry = CollectorRegistry()
    registry.register(collector)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    bound = server.server_port
    if port_file is not None:   # where this user's tools find the endpoint: private
        write_atomic(port_file, f"{bound}\n", mode=0o600)
    return server, bound
