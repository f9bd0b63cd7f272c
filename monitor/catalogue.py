"""Every metric the monitor exports: name -> help text (one place for HELP lines and the docs).

Names follow node_exporter / DCGM conventions with an `hpcbench_` prefix (so they never collide
with a node_exporter or DCGM exporter scraped by the same Prometheus) and base units: ratios in
0..1, bytes, seconds, watts, joules, hertz, degrees Celsius. A name ending in `_total` is a
counter; every other name is a gauge. The DCGM field a GPU metric corresponds to is named in its
help text, for users who know DCGM dashboards.
"""
from __future__ import annotations

NODE = {
    "hpcbench_node_cpu_utilisation_ratio": "CPU busy fraction of the whole node (0..1) since the previous sample.",
    "hpcbench_node_cpu_core_utilisation_ratio": "CPU busy fraction of one core (label cpu) since the previous sample.",
    "hpcbench_node_cpu_cores": "Logical CPU cores on the node.",
    "hpcbench_node_load1": "1-minute load average (node_exporter node_load1).",
    "hpcbench_node_load5": "5-minute load average (node_exporter node_load5).",
    "hpcbench_node_load15": "15-minute load average (node_exporter node_load15).",
    "hpcbench_node_memory_total_bytes": "Physical memory of the node.",
    "hpcbench_node_memory_used_bytes": "Memory in use (total minus free, buffers and cache).",
    "hpcbench_node_memory_available_bytes": "Memory available to new processes (node_exporter MemAvailable).",
    "hpcbench_node_network_receive_bytes_total": "Bytes received by a network interface (label device).",
    "hpcbench_node_network_transmit_bytes_total": "Bytes sent by a network interface (label device).",
    "hpcbench_node_disk_read_bytes_total": "Bytes read from all block devices of the node.",
    "hpcbench_node_disk_written_bytes_total": "Bytes written to all block devices of the node.",
}

SERVICE = {
    "hpcbench_service_up": "1 while the service process (--service-pid) exists, else 0.",
    "hpcbench_service_processes": "Processes in the service's process tree (the pid and its children).",
    "hpcbench_service_cpu_seconds_total": "User plus system CPU time of the service's live process tree.",
    "hpcbench_service_resident_memory_bytes": "Resident memory (RSS) of the service's process tree.",
}

GPU = {
    "hpcbench_gpu_utilisation_ratio": "GPU busy fraction (0..1); DCGM_FI_DEV_GPU_UTIL / 100.",
    "hpcbench_gpu_memory_used_bytes": "GPU framebuffer memory in use; DCGM_FI_DEV_FB_USED in bytes.",
    "hpcbench_gpu_memory_total_bytes": "GPU framebuffer memory size; DCGM_FI_DEV_FB_TOTAL in bytes.",
    "hpcbench_gpu_power_watts": "GPU power draw; DCGM_FI_DEV_POWER_USAGE.",
    "hpcbench_gpu_energy_joules_total":
        "GPU energy since the driver loaded; DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION in joules.",
    "hpcbench_gpu_temperature_celsius": "GPU core temperature; DCGM_FI_DEV_GPU_TEMP.",
    "hpcbench_gpu_sm_clock_hertz": "Streaming-multiprocessor clock; DCGM_FI_DEV_SM_CLOCK in hertz.",
    "hpcbench_gpu_memory_clock_hertz": "Memory clock; DCGM_FI_DEV_MEM_CLOCK in hertz.",
}

SERVER = {
    "hpcbench_server_up": "1 when the inference server's /metrics answered the last scrape, else 0.",
    "hpcbench_server_scrape_sent_time_seconds":
        "When the last answered scrape of the server's /metrics was sent (Unix seconds).",
    "hpcbench_server_scrape_read_time_seconds":
        "When the answer of the last answered scrape was read (Unix seconds).",
    "hpcbench_server_kv_cache_usage_ratio":
        "KV-cache blocks in use (0..1); vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc.",
    "hpcbench_server_requests_running": "Requests the server is running now; vllm:num_requests_running.",
    "hpcbench_server_requests_waiting": "Requests queued in the server; vllm:num_requests_waiting.",
    "hpcbench_server_prompt_tokens_total": "Prompt tokens the server processed; vllm:prompt_tokens_total.",
    "hpcbench_server_generation_tokens_total": "Tokens the server generated; vllm:generation_tokens_total.",
    "hpcbench_server_request_success_total": "Requests the server finished; vllm:request_success_total.",
    "hpcbench_server_preemptions_total": "Sequences the server preempted; vllm:num_preemptions_total.",
    "hpcbench_server_prefix_cache_queries_total":
        "Prompt tokens looked up in the prefix cache; vllm:prefix_cache_queries_total.",
    "hpcbench_server_prefix_cache_hits_total":
        "Prompt tokens found in the prefix cache; vllm:prefix_cache_hits_total.",
    "hpcbench_server_prompt_seconds_total":
        "Time the server spent processing prompts; llamacpp:prompt_seconds_total.",
    "hpcbench_server_generation_seconds_total":
        "Time the server's slots spent generating, summed over slots; "
        "llamacpp:tokens_predicted_seconds_total.",
    "hpcbench_server_decode_calls_total": "Decode steps (llama_decode calls); llamacpp:n_decode_total.",
    "hpcbench_server_busy_slots_per_decode":
        "Busy slots per decode step since the server started; llamacpp:n_busy_slots_per_decode.",
}

# The server's own latency histograms (seconds), exported as Prometheus histograms:
# <name>_bucket{le}, <name>_sum, <name>_count.
SERVER_HISTOGRAMS = {
    "hpcbench_server_time_to_first_token_seconds":
        "The server's time to first token, from the request's arrival in its engine; "
        "vllm:time_to_first_token_seconds.",
    "hpcbench_server_inter_token_latency_seconds":
        "The server's gaps between output tokens; vllm:inter_token_latency_seconds "
        "(older vLLM: vllm:time_per_output_token_seconds, the same gaps).",
    "hpcbench_server_request_time_per_output_token_seconds":
        "The server's time per output token after the first, per request; "
        "vllm:request_time_per_output_token_seconds.",
    "hpcbench_server_e2e_request_latency_seconds":
        "The server's end-to-end request latency; vllm:e2e_request_latency_seconds.",
    "hpcbench_server_request_queue_time_seconds":
        "Time requests waited in the server's queue; vllm:request_queue_time_seconds.",
    "hpcbench_server_request_prefill_time_seconds":
        "Time requests spent in prefill; vllm:request_prefill_time_seconds.",
    "hpcbench_server_request_decode_time_seconds":
        "Time requests spent in decode; vllm:request_decode_time_seconds.",
}
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")

MONITOR = {
    "hpcbench_monitor_samples_total": "Samples this monitor has taken.",
    "hpcbench_monitor_missed_samples_total": "Sample ticks skipped because sampling fell behind the interval.",
    "hpcbench_monitor_telemetry_dropped_total":
        "Telemetry messages not sent because the coordinator did not take them.",
    "hpcbench_monitor_push_failures_total": "Pushgateway pushes that failed.",
}

METRICS: dict[str, str] = {**NODE, **SERVICE, **GPU, **SERVER, **MONITOR}


def histogram_of(name: str) -> str | None:
    """The server histogram `name` is a part of (`<histogram>_bucket`, `_sum`, `_count`), or
    None for a plain metric."""
    for part in HISTOGRAM_PARTS:
        if name.endswith(part) and name[: -len(part)] in SERVER_HISTOGRAMS:
            return name[: -len(part)]
    return None


def is_counter(name: str) -> bool:
    """Counters are exactly the names ending in `_total` (Prometheus convention)."""
    return name.endswith("_total")
