"""The inference server's own Prometheus /metrics, mapped to hpcbench names.

Two servers export metrics today:
- vLLM (`vllm:*`): gauges and counters, and its latency histograms (time to first token,
  inter-token latency, per-request TPOT, end-to-end latency, queue, prefill and decode time).
  vLLM renamed `vllm:gpu_cache_usage_perc` to `vllm:kv_cache_usage_perc` and
  `vllm:time_per_output_token_seconds` (a per-token gap, despite the name) to
  `vllm:inter_token_latency_seconds`; both names are read, the new one wins when a server
  exports both. Despite "perc", vLLM reports a 0..1 fraction. The simulator exports vLLM's names.
- llama.cpp's `llama-server` started with `--metrics` (`llamacpp:*`): counters of prompt and
  generated tokens and the time spent on each, decode calls, busy slots per decode, requests
  processing and deferred. It has no latency histograms. llama-cpp-python's server (the
  `llamacpp` service's default) has no /metrics at all.

A server exposing several label sets of one metric (models, engines) is summed, ratios are
averaged; histograms are summed bucket by bucket. Histograms travel in telemetry the
Prometheus way: `<name>_bucket` series labelled `le` (cumulative counts, "+Inf" last) beside
unlabelled `<name>_sum` and `<name>_count` (proto/telemetry.py).
"""
from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from hpcbench.monitor.reading import Reading

log = logging.getLogger(__name__)

# server sample name -> (hpcbench name, how label sets combine); earlier rows win on conflicts.
SERVER_NAMES: dict[str, tuple[str, str]] = {
    "vllm:kv_cache_usage_perc": ("hpcbench_server_kv_cache_usage_ratio", "mean"),
    "vllm:gpu_cache_usage_perc": ("hpcbench_server_kv_cache_usage_ratio", "mean"),
    "vllm:num_requests_running": ("hpcbench_server_requests_running", "sum"),
    "vllm:num_requests_waiting": ("hpcbench_server_requests_waiting", "sum"),
    "vllm:prompt_tokens_total": ("hpcbench_server_prompt_tokens_total", "sum"),
    "vllm:generation_tokens_total": ("hpcbench_server_generation_tokens_total", "sum"),
    "vllm:request_success_total": ("hpcbench_server_request_success_total", "sum"),
    "vllm:num_preemptions_total": ("hpcbench_server_preemptions_total", "sum"),
    "vllm:prefix_cache_queries_total": ("hpcbench_server_prefix_cache_queries_total", "sum"),
    "vllm:prefix_cache_hits_total": ("hpcbench_server_prefix_cache_hits_total", "sum"),
    # llama.cpp's llama-server (--metrics)
    "llamacpp:requests_processing": ("hpcbench_server_requests_running", "sum"),
    "llamacpp:requests_deferred": ("hpcbench_server_requests_waiting", "sum"),
    "llamacpp:kv_cache_usage_ratio": ("hpcbench_server_kv_cache_usage_ratio", "mean"),
    "llamacpp:prompt_tokens_total": ("hpcbench_server_prompt_tokens_total", "sum"),
    "llamacpp:tokens_predicted_total": ("hpcbench_server_generation_tokens_total", "sum"),
    "llamacpp:prompt_seconds_total": ("hpcbench_server_prompt_seconds_total", "sum"),
    "llamacpp:tokens_predicted_seconds_total":
        ("hpcbench_server_generation_seconds_total", "sum"),
    "llamacpp:n_decode_total": ("hpcbench_server_decode_calls_total", "sum"),
    # typed a counter by llama-server although it is a lifetime average; the Python parser
    # names its sample with `_total`, other parsers without
    "llamacpp:n_busy_slots_per_decode_total": ("hpcbench_server_busy_slots_per_decode", "mean"),
    "llamacpp:n_busy_slots_per_decode": ("hpcbench_server_busy_slots_per_decode", "mean"),
}

# when the last answered scrape was sent and its answer read (Unix seconds)
SCRAPE_SENT = "hpcbench_server_scrape_sent_time_seconds"
SCRAPE_READ = "hpcbench_server_scrape_read_time_seconds"

# server histogram -> hpcbench histogram (seconds); earlier rows win on conflicts.
HISTOGRAM_NAMES: dict[str, str] = {
    "vllm:time_to_first_token_seconds": "hpcbench_server_time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds": "hpcbench_server_inter_token_latency_seconds",
    "vllm:time_per_output_token_seconds": "hpcbench_server_inter_token_latency_seconds",
    "vllm:request_time_per_output_token_seconds":
        "hpcbench_server_request_time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds": "hpcbench_server_e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds": "hpcbench_server_request_queue_time_seconds",
    "vllm:request_prefill_time_seconds": "hpcbench_server_request_prefill_time_seconds",
    "vllm:request_decode_time_seconds": "hpcbench_server_request_decode_time_seconds",
}


@dataclass
class ServerHistogram:
    """One Prometheus histogram, summed over label sets: cumulative count per upper bound."""

    buckets: dict[float, float] = field(default_factory=dict)   # le -> observations <= le
    sum: float = 0.0
    count: float = 0.0

    def add_to(self, reading: Reading, name: str) -> None:
        reading.add(f"{name}_sum", self.sum)
        reading.add(f"{name}_count", self.count)
        for bound in sorted(self.buckets):
            reading.add(f"{name}_bucket", self.buckets[bound], {"le": floatToGoString(bound)})


def parse_server_metrics(text: str) -> tuple[dict[str, float], dict[str, ServerHistogram]]:
    """hpcbench values and histograms from a Prometheus text exposition (unknown metrics
    are ignored); ValueError when the text is not an exposition."""
    values: dict[str, list[float]] = {}
    histograms: dict[str, ServerHistogram] = {}
    for family in text_string_to_metric_families(text):
        if family.type == "histogram" and family.name in HISTOGRAM_NAMES:
            histogram = histograms.setdefault(family.name, ServerHistogram())
            for sample in family.samples:
                if sample.name == f"{family.name}_bucket":
                    bound = _bound(sample.labels.get("le"))
                    if bound is not None:
                        histogram.buckets[bound] = histogram.buckets.get(bound, 0.0) + sample.value
                elif sample.name == f"{family.name}_sum":
                    histogram.sum += sample.value
                elif sample.name == f"{family.name}_count":
                    histogram.count += sample.value
            continue
        for sample in family.samples:
            if sample.name in SERVER_NAMES:
                values.setdefault(sample.name, []).append(sample.value)
    mapped: dict[str, float] = {}
    for source, (target, combine) in SERVER_NAMES.items():
        found = values.get(source)
        if found and target not in mapped:
            mapped[target] = sum(found) / len(found) if combine == "mean" else sum(found)
    mapped_histograms: dict[str, ServerHistogram] = {}
    for source, target in HISTOGRAM_NAMES.items():
        if source in histograms and target not in mapped_histograms:
            mapped_histograms[target] = histograms[source]
    return mapped, mapped_histograms


def _bound(text: str | None) -> float | None:
    """A bucket's upper bound; None for a missing or unreadable `le` (that bucket is skipped)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def map_server_metrics(text: str) -> dict[str, float]:
    """hpcbench gauges and counters from a Prometheus text exposition (no histograms)."""
    return parse_server_metrics(text)[0]


class ServerMetricsSource:
    """Scrapes `url` each tick; a failed scrape gives `hpcbench_server_up 0`, never an exception.

    Up/down changes are reported once on stderr, not on every tick.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._was_up: bool | None = None

    def read(self) -> Reading:
        """The server's values, with when the scrape was sent and when its answer was read:
        the server rendered its values between the two, which may be well after the tick's
        own time on a busy node (a window bracketed by scrapes needs the real instants)."""
        reading = Reading()
        sent = time.time()
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:
                text = response.read().decode("utf-8", errors="replace")
            read = time.time()
            mapped, histograms = parse_server_metrics(text)
        except (urllib.error.URLError, OSError, ValueError) as error:
            self._note_state(False, f"{type(error).__name__}: {error}")
            reading.add("hpcbench_server_up", 0.0)
            return reading
        self._note_state(True, "")
        reading.add("hpcbench_server_up", 1.0)
        reading.add(SCRAPE_SENT, sent)
        reading.add(SCRAPE_READ, read)
        for name, value in mapped.items():
            reading.add(name, value)
        for name, histogram in histograms.items():
            histogram.add_to(reading, name)
        return reading

    def _note_state(self, up: bool, why: str) -> None:
        if up == self._was_up:
            return
        self._was_up = up
        state = "answering" if up else f"not answering ({why}); retrying every sample"
        (log.info if up else log.warning)("server metrics %s %s", self.url, state)
