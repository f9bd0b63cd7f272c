"""The reference toolkit's workload names on the coordinator's Prometheus endpoint (opt-in).

The reference's executors served `<service>_requests_total`, `_errors_total`,
`_request_latency_seconds`, `_throughput_rps`, `_elapsed_seconds`, `_threads` and
`_workload_running`, named after the service (`ollama_requests_total` for Ollama). With the
recipe's `monitoring.prometheus.compat_names: reference` the coordinator's endpoint carries
them for the whole session, next to hpcbench's own names, with the reference's labels: none
(Prometheus adds the target's `instance` and `job`). They describe the latest trial, the
running one or else the last one, as a reference executor's counters described its latest
workload; a new trial starts them from zero again (a counter reset, which rate() handles).

The values are hpcbench's measurements, in the units the names state:

  requests_total           requests finished in the measured window, failed ones included
  errors_total             of those, the failed ones (every error class)
  request_latency_seconds  mean E2E latency (successful and timed-out requests)
  throughput_rps           requests_total / elapsed_seconds
  elapsed_seconds          the measured window so far (first intended send to last end)
  threads                  closed-loop streams of all executors; absent under an open-loop
                           schedule, which has no fixed number of clients
  workload_running         1 from a trial's start to its end, else 0
"""
from __future__ import annotations

import re
import threading

from prometheus_client.core import Metric

from hpcbench.proto import bus

MS = 1e-3
FIELDS = (   # name suffix, kind, help, value from the trial's cumulative statistics
    ("requests_total", "counter",
     "Requests finished in the trial's measured window, failed ones included "
     "(hpcbench_requests_total).",
     lambda stats: stats.get("requests")),
    ("errors_total", "counter",
     "Failed requests of the trial's measured window, every error class "
     "(sum of hpcbench_request_errors_total).",
     lambda stats: stats.get("error_total")),
    ("request_latency_seconds", "gauge",
     "Mean end-to-end request latency of the trial so far, from the intended send time "
     "(hpcbench_latency_seconds{metric=\"e2e\"} _sum / _count).",
     lambda stats: _mean_seconds(stats, "e2e")),
    ("throughput_rps", "gauge",
     "Requests per second over the trial's measured window so far.",
     lambda stats: stats.get("req_per_s")),
    ("elapsed_seconds", "gauge",
     "Seconds of the trial's measured window so far.",
     lambda stats: stats.get("seconds")),
)


def prefix(service: str) -> str:
    """The reference named these after the service: `ollama` -> `ollama_`; characters a
    Prometheus name cannot hold become `_`."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", service) + "_"


def _mean_seconds(stats: dict, metric: str) -> float | None:
    values = stats.get("latency", {}).get(metric) or {}
    return values["mean"] * MS if values.get("count") and values.get("mean") is not None else None


class WorkloadNames:
    """Follows the bus (snapshots and lifecycle events) and renders the reference's names."""

    def __init__(self, service: str) -> None:
        self.prefix = prefix(service)
        self._lock = threading.Lock()
        self._stats: dict | None = None            # the latest trial's cumulative statistics
        self._running: str | None = None           # the trial whose load runs now
        self._seq = {bus.SNAPSHOT: -1, bus.EVENT: -1, bus.SUMMARY: -1}   # replays: skipped
        self._streams: dict[str, int] = {}         # trial -> closed-loop streams

    def update(self, message: dict) -> None:
        """One bus message (bus.subscribe()); one seen before (a replay) changes nothing."""
        topic = message["topic"]
        if topic not in self._seq:
            return
        with self._lock:
            if message["seq"] <= self._seq[topic]:
                return
            self._seq[topic] = message["seq"]
        if topic == bus.SNAPSHOT:
            self.snapshot(message["data"])
        elif topic == bus.SUMMARY:
            self.summary(message["data"])
        else:
            self.event(message["data"])

    def snapshot(self, snapshot: dict) -> None:
        """An aggregator snapshot; while a trial runs, only that trial's count."""
        self._take(snapshot.get("trial"), snapshot.get("cumulative"))

    def summary(self, summary: dict) -> None:
        """A finished trial's summary: its final figures, as its summary.json has them (the
        last snapshot may lack the batches that arrived after it)."""
        self._take(summary.get("trial"), summary.get("overall"))

    def _take(self, trial: str | None, stats: dict | None) -> None:
        with self._lock:
            if trial is not None and stats and self._running in (None, trial):
                self._stats = stats

    def event(self, data: dict) -> None:
        name = data.get("event")
        with self._lock:
            if name == bus.Event.TRIAL_START:
                self._running = data.get("trial")
                self._stats = None                 # the new trial's counters start at zero
            elif name in (bus.Event.TRIAL_END, bus.Event.TRIAL_STOPPED) and \
                    data.get("trial") == self._running:
                self._running = None
            elif name == bus.Event.SESSION_END:
                self._running = None

    def streams(self, trial: str, count: int | None) -> None:
        """The closed-loop streams a trial runs (None: an open-loop schedule)."""
        with self._lock:
            if count is None:
                self._streams.pop(trial, None)
            else:
                self._streams[trial] = count

    def families(self) -> list[Metric]:
        with self._lock:
            stats, running, streams = self._stats, self._running, dict(self._streams)
        name = self.prefix + "workload_running"
        running_family = Metric(name, "1 while a trial's load runs, 0 once it is complete.",
                                "gauge")
        running_family.add_sample(name, {}, 1.0 if running is not None else 0.0)
        families = [running_family]
        for suffix, kind, doc, value_of in FIELDS if stats is not None else ():
            value = value_of(stats)
            if value is None:
                continue
            name = self.prefix + suffix
            family = Metric(name[: -len("_total")] if kind == "counter" else name, doc, kind)
            family.add_sample(name, {}, value)
            families.append(family)
        if running is not None and running in streams:
            name = self.prefix + "threads"
            family = Metric(name, "Closed-loop streams (the reference's client threads) of "
                                  "every executor in the running trial.", "gauge")
            family.add_sample(name, {}, streams[running])
            families.append(family)
        return families
