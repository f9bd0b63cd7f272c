"""The inference server's own Prometheus /metrics, mapped to hpcbench names (vLLM names today).

vLLM renamed `vllm:gpu_cache_usage_perc` to `vllm:kv_cache_usage_perc`; both are read, the new
name wins when a server exports both. Despite "perc", vLLM reports a 0..1 fraction. A server
exposing several label sets of one metric (models, engines) is summed, ratios are averaged.
"""
from __future__ import annotations

import logging
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from hpcbench.monitor.reading import Reading

log = logging.getLogger(__name__)

# server sample name -> (hpcbench name, how label sets combine); earlier rows win on conflicts.
VLLM_NAMES: dict[str, tuple[str, str]] = {
    "vllm:kv_cache_usage_perc": ("hpcbench_server_kv_cache_usage_ratio", "mean"),
    "vllm:gpu_cache_usage_perc": ("hpcbench_server_kv_cache_usage_ratio", "mean"),
    "vllm:num_requests_running": ("hpcbench_server_requests_running", "sum"),
    "vllm:num_requests_waiting": ("hpcbench_server_requests_waiting", "sum"),
    "vllm:prompt_tokens_total": ("hpcbench_server_prompt_tokens_total", "sum"),
    "vllm:generation_tokens_total": ("hpcbench_server_generation_tokens_total", "sum"),
    "vllm:request_success_total": ("hpcbench_server_request_success_total", "sum"),
    "vllm:num_preemptions_total": ("hpcbench_server_preemptions_total", "sum"),
}


def map_server_metrics(text: str) -> dict[str, float]:
    """hpcbench values from a Prometheus text exposition (unknown metrics are ignored)."""
    values: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in VLLM_NAMES:
                values.setdefault(sample.name, []).append(sample.value)
    mapped: dict[str, float] = {}
    for source, (target, combine) in VLLM_NAMES.items():
        found = values.get(source)
        if found and target not in mapped:
            mapped[target] = sum(found) / len(found) if combine == "mean" else sum(found)
    return mapped


class ServerMetricsSource:
    """Scrapes `url` each tick; a failed scrape gives `hpcbench_server_up 0`, never an exception.

    Up/down changes are reported once on stderr, not on every tick.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._was_up: bool | None = None

    def read(self) -> Reading:
        reading = Reading()
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:
                text = response.read().decode("utf-8", errors="replace")
            mapped = map_server_metrics(text)
        except (urllib.error.URLError, OSError, ValueError) as error:
            self._note_state(False, f"{type(error).__name__}: {error}")
            reading.add("hpcbench_server_up", 0.0)
            return reading
        self._note_state(True, "")
        reading.add("hpcbench_server_up", 1.0)
        for name, value in mapped.items():
            reading.add(name, value)
        return reading

    def _note_state(self, up: bool, why: str) -> None:
        if up == self._was_up:
            return
        self._was_up = up
        state = "answering" if up else f"not answering ({why}); retrying every sample"
        (log.info if up else log.warning)("server metrics %s %s", self.url, state)
