"""The coordinator's Prometheus endpoint: latency, throughput and errors of the running session,
plus every node's telemetry, as a ZeroMQ SUB client of the metrics bus.

Fed with aggregator snapshots (bus topic `snapshot`, shape: Aggregator.snapshot()) and monitor
messages (topic `telemetry`), it renders at scrape time:

  hpcbench_latency_seconds{metric,trial,quantile}   summary of the trial so far (cumulative),
                                                    quantile 0.5 .. 0.999 and 1 (= max), _count, _sum
  hpcbench_interval_latency_seconds{...}            the same summary of the last interval only
                                                    (what "latency over time" panels plot)
  hpcbench_request_latency_seconds{metric,trial,le} histogram of the trial so far in fixed
                                                    buckets (statistics.LATENCY_BUCKETS_S: ttft,
                                                    itl, tpot, e2e): histogram_quantile() and
                                                    sums across trials and runs work on it
  hpcbench_requests_total, hpcbench_request_errors_total{error}, hpcbench_good_requests_total,
  hpcbench_input_tokens_total, hpcbench_output_tokens_total          per trial, cumulative
  hpcbench_requests_per_second, hpcbench_output_tokens_per_second,
  hpcbench_total_tokens_per_second, hpcbench_goodput_requests_per_second   last interval
  hpcbench_sample_batches_{missing,duplicate,malformed}_total,
  hpcbench_telemetry_{messages,malformed}_total                      integrity of the data plane

Every series carries `run` and `trial`; a finished trial keeps its final cumulative values, the
interval gauges follow the current trial only. `metric` is ttft, itl, tpot, e2e, dispatch_lag or
queue_time (hpcbench.common.measure.definitions).

With `compat="reference"` (the recipe's monitoring.prometheus.compat_names) the endpoint also
carries the reference toolkit's names: the workload's (`ollama_requests_total`, ...,
coordinator/bus/compat.py) and the nodes' (`cpu_usage_percent`, ..., monitor/compat.py).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.bus.compat import WorkloadNames
from hpcbench.monitor.exposition import TelemetryCollector, serve
from hpcbench.proto import bus as bus_contract

MS = 1e-3
QUANTILES = (("p50", "0.5"), ("p90", "0.9"), ("p95", "0.95"), ("p99", "0.99"),
             ("p99.9", "0.999"), ("max", "1"))
CUMULATIVE_COUNTERS = (
    ("requests", "hpcbench_requests_total",
     "Requests finished in the measured window."),
    ("good_requests", "hpcbench_good_requests_total",
     "Requests meeting every SLO."),
    ("input_tokens", "hpcbench_input_tokens_total",
     "Prompt tokens of successful requests."),
    ("output_tokens", "hpcbench_output_tokens_total",
     "Output tokens of successful requests."),
    ("reasoning_tokens", "hpcbench_reasoning_tokens_total",
     "Of the output tokens, those streamed as reasoning content."),
)
INTERVAL_RATES = (
    ("req_per_s", "hpcbench_requests_per_second",
     "Requests per second, last interval."),
    ("output_tokens_per_s", "hpcbench_output_tokens_per_second",
     "Output tokens per second, last interval."),
    ("total_tokens_per_s", "hpcbench_total_tokens_per_second",
     "Input plus output tokens per second, last interval."),
    ("goodput_req_per_s", "hpcbench_goodput_requests_per_second",
     "Requests meeting every SLO per second, last interval."),
)
INTEGRITY = (
    ("missing_batches", "hpcbench_sample_batches_missing_total",
     "Sample batches never received (sequence gaps)."),
    ("duplicate_batches", "hpcbench_sample_batches_duplicate_total",
     "Sample batches received twice (not double counted)."),
    ("malformed_batches", "hpcbench_sample_batches_malformed_total",
     "Sample batches rejected as malformed."),
    ("telemetry_messages", "hpcbench_telemetry_messages_total",
     "Monitor telemetry messages received."),
    ("telemetry_malformed", "hpcbench_telemetry_malformed_total",
     "Monitor telemetry messages rejected as malformed."),
)


class SessionCollector(Collector):
    """Holds the newest snapshot, each trial's last cumulative stats and every node's telemetry."""

    def __init__(self, compat: str = "none", service: str = "simulator") -> None:
        self.telemetry = TelemetryCollector(compat)
        # the reference's workload names, named after the service (coordinator/bus/compat.py)
        self.workload = WorkloadNames(service) if compat == "reference" else None
        self._lock = threading.Lock()
        self._latest: dict | None = None
        self._trials: dict[str, tuple[str, dict]] = {}   # trial -> (run, cumulative stats)

    def update_snapshot(self, snapshot: dict) -> None:
        self._record_snapshot(snapshot)
        if self.workload is not None:
            self.workload.snapshot(snapshot)

    def _record_snapshot(self, snapshot: dict) -> None:
        with self._lock:
            self._latest = snapshot
            if snapshot.get("trial") is not None and snapshot.get("cumulative"):
                self._trials[snapshot["trial"]] = (snapshot["run"], snapshot["cumulative"])

    def update_bus_message(self, message: dict) -> None:
        """Take one message from bus.subscribe(); events and summaries matter to the reference's
        workload names only, other topics are ignored."""
        if message["topic"] == bus_contract.SNAPSHOT:
            self._record_snapshot(message["data"])
        elif message["topic"] == bus_contract.TELEMETRY:
            self.telemetry.update(message["data"])
        if self.workload is not None:
            self.workload.update(message)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            latest, trials = self._latest, dict(self._trials)
        families: dict[str, Metric] = {}

        def family(name: str, kind: str, doc: str) -> Metric:
            if name not in families:
                base = name[: -len("_total")] if kind == "counter" else name
                families[name] = Metric(base, doc, kind)
            return families[name]

        for trial, (run, stats) in trials.items():
            labels = {"run": run, "trial": trial}
            summary = family("hpcbench_latency_seconds", "summary",
                             "Request latency percentiles of the trial so far (quantile 1 = max).")
            for metric, values in stats.get("latency", {}).items():
                _summary(summary, {**labels, "metric": metric}, values)
            histogram = family("hpcbench_request_latency_seconds", "histogram",
                               "Request latency of the trial so far, in fixed buckets.")
            for metric, buckets in stats.get("latency_buckets", {}).items():
                _histogram(histogram, {**labels, "metric": metric}, buckets,
                           stats["latency"][metric])
            for key, name, doc in CUMULATIVE_COUNTERS:
                if stats.get(key) is not None:
                    family(name, "counter", doc).add_sample(name, labels, stats[key])
            errors = family("hpcbench_request_errors_total", "counter", "Failed requests by error class.")
            for error, count in stats.get("errors", {}).items():
                errors.add_sample("hpcbench_request_errors_total", {**labels, "error": error}, count)

        if latest is not None and latest.get("interval") and latest.get("trial") is not None:
            labels = {"run": latest["run"], "trial": latest["trial"]}
            interval = latest["interval"]
            summary = family("hpcbench_interval_latency_seconds", "summary",
                             "Request latency percentiles of the last interval (quantile 1 = max).")
            for metric, values in interval.get("latency", {}).items():
                _summary(summary, {**labels, "metric": metric}, values)
            for key, name, doc in INTERVAL_RATES:
                if interval.get(key) is not None:
                    family(name, "gauge", doc).add_sample(name, labels, interval[key])
        if latest is not None:
            for key, name, doc in INTEGRITY:
                value = latest.get("integrity", {}).get(key)
                if value is not None:
                    family(name, "counter", doc).add_sample(name, {"run": latest["run"]}, value)
        yield from families.values()
        if self.workload is not None:
            yield from self.workload.families()
        yield from self.telemetry.collect()


def _summary(family: Metric, labels: dict, values: dict) -> None:
    """Quantiles (ms -> s), _count and _sum of one latency metric; nothing when it is empty."""
    if not values.get("count"):
        return
    for key, quantile in QUANTILES:
        if values.get(key) is not None:
            family.add_sample(family.name, {**labels, "quantile": quantile}, values[key] * MS)
    _count_and_sum(family, labels, values)


def _count_and_sum(family: Metric, labels: dict, values: dict) -> None:
    family.add_sample(f"{family.name}_count", labels, values["count"])
    family.add_sample(f"{family.name}_sum", labels, values["count"] * (values["mean"] or 0.0) * MS)


def _histogram(family: Metric, labels: dict, buckets: dict, values: dict) -> None:
    """Cumulative `le` buckets (s), +Inf, _count and _sum of one latency metric; `_count` and
    `_sum` are the summary's, so both types agree."""
    for bound, count in zip(buckets["le"], buckets["counts"]):
        family.add_sample(f"{family.name}_bucket", {**labels, "le": floatToGoString(bound)}, count)
    family.add_sample(f"{family.name}_bucket", {**labels, "le": "+Inf"}, values["count"])
    _count_and_sum(family, labels, values)


class SessionMetricsServer:
    """Serve a SessionCollector on http://host:port/metrics, fed by a bus subscriber thread."""

    def __init__(self, bus_endpoint: str, host: str = "127.0.0.1", port: int = 0,
                 port_file: Path | None = None, compat: str = "none",
                 service: str = "simulator", curve=None) -> None:
        """`curve`: the session's keys when its bus is on CURVE (unkeyed, it would hear
        nothing)."""
        from hpcbench.coordinator.bus.publisher import subscribe

        self.collector = SessionCollector(compat, service)
        self._subscribe = subscribe
        self._bus_endpoint = bus_endpoint
        self._curve = curve
        self._stop = threading.Event()
        self._topics = (bus_contract.SNAPSHOT, bus_contract.TELEMETRY)
        if self.collector.workload is not None:
            self._topics += (bus_contract.EVENT, bus_contract.SUMMARY)
        try:
            self._server, self.port = serve(self.collector, host, port, port_file)
        except OSError as error:
            raise HpcbenchError(
                "E005", f"cannot serve the session's Prometheus metrics on {host}:{port} ({error})",
                ("set the recipe's monitoring.prometheus.port to a free port",)) from None
        self._thread = threading.Thread(target=self._follow, name="session-metrics", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        """One subscription for the session's whole life."""
        for message in self._subscribe(self._bus_endpoint, self._topics, curve=self._curve,
                                       stop=self._stop):
            self.collector.update_bus_message(message)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "SessionMetricsServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
