"""The sampling loop: read every source at a fixed interval and hand the tick to every output.

Outputs: telemetry PUSH to the coordinator, the node CSV, the Prometheus collector and the
Pushgateway; each is optional, so the monitor also runs standalone. Ticks are anchored to the
start time (no drift); when a tick takes longer than the interval, the ticks it overran are
skipped and counted, never bunched up.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from hpcbench.monitor.csv_log import CsvLog
from hpcbench.monitor.exposition import TelemetryCollector
from hpcbench.monitor.pushgateway import Pusher
from hpcbench.monitor.reading import Reading
from hpcbench.monitor.telemetry_sender import TelemetrySender
from hpcbench.proto import telemetry

log = logging.getLogger(__name__)


class Source(Protocol):
    def read(self) -> Reading: ...


@dataclass
class Outputs:
    telemetry: TelemetrySender | None = None
    csv: CsvLog | None = None
    collector: TelemetryCollector | None = None
    pusher: Pusher | None = None


@dataclass
class Sampler:
    run_id: str
    node: str
    interval_s: float
    sources: list[Source]
    outputs: Outputs = field(default_factory=Outputs)
    samples: int = 0
    missed: int = 0
    _failed_sources: set[str] = field(default_factory=set, repr=False)

    def sample_once(self) -> dict:
        """Read all sources now, deliver the message to every output and return it."""
        ts_ns = time.time_ns()
        reading = Reading()
        for source in self.sources:
            reading.merge(self._read(source))
        self.samples += 1
        out = self.outputs
        reading.add("hpcbench_monitor_samples_total", self.samples)
        reading.add("hpcbench_monitor_missed_samples_total", self.missed)
        if out.telemetry is not None:
            reading.add("hpcbench_monitor_telemetry_dropped_total", out.telemetry.dropped)
        if out.pusher is not None:
            reading.add("hpcbench_monitor_push_failures_total", out.pusher.failures)
        message = telemetry.build(self.run_id, self.node, self.samples - 1, ts_ns,
                                  reading.metrics, reading.series)
        if out.telemetry is not None:
            out.telemetry.send(telemetry.pack(message))
        if out.csv is not None:
            out.csv.write(ts_ns, reading.metrics, reading.series)
        if out.collector is not None:
            out.collector.update(message)
        if out.pusher is not None:
            out.pusher.push_if_due()
        return message

    def _read(self, source: Source) -> Reading:
        """One source's reading; a source that fails is reported once and skipped this tick,
        so one broken reading never stops the others."""
        try:
            return source.read()
        except Exception as error:  # psutil, NVML, parsers: whatever a source raises
            name = type(source).__name__
            if name not in self._failed_sources:
                self._failed_sources.add(name)
                log.warning("%s failed (%s: %s); its metrics are left out of every sample it "
                            "fails (said once)", name, type(error).__name__, error)
            return Reading()

    def run(self, stop: threading.Event, max_samples: int | None = None,
            duration_s: float | None = None) -> None:
        """Sample until `stop` is set, `max_samples` are taken or `duration_s` has passed."""
        start = time.monotonic()
        tick = 0
        while not stop.is_set():
            self.sample_once()
            if max_samples is not None and self.samples >= max_samples:
                break
            elapsed = time.monotonic() - start
            following = max(tick + 1, math.floor(elapsed / self.interval_s) + 1)
            self.missed += following - tick - 1
            tick = following
            due = tick * self.interval_s
            if duration_s is not None and due > duration_s:
                break
            stop.wait(max(0.0, due - (time.monotonic() - start)))
        if self.outputs.pusher is not None:
            self.outputs.pusher.push_if_due(force=True)  # the gateway keeps the final values
