"""Known inputs for the monitor and exposition suites: vLLM /metrics texts (new and old
metric names) and sample batches with known latencies."""
from __future__ import annotations

import time

import numpy as np

from hpcbench.proto import samples

NEW_VLLM = """\
# HELP vllm:kv_cache_usage_perc KV-cache usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.25
vllm:kv_cache_usage_perc{model_name="m",engine="1"} 0.75
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.99
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m",engine="0"} 3
vllm:num_requests_running{model_name="m",engine="1"} 4
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 2
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{model_name="m"} 4321
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{model_name="m"} 1234
# TYPE vllm:request_success counter
vllm:request_success_total{model_name="m",finished_reason="stop"} 10
vllm:request_success_total{model_name="m",finished_reason="length"} 5
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{model_name="m"} 1
# TYPE vllm:unrelated gauge
vllm:unrelated 7
"""
OLD_VLLM = """\
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.5
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{model_name="m"} 2
"""

# vLLM's histograms from two engines, its prefix-cache counters and the older name of the
# inter-token histogram (the newer one wins)
VLLM_HISTOGRAMS = """\
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 2
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.5",model_name="m"} 3
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.5
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 4
vllm:time_to_first_token_seconds_bucket{engine="1",le="0.1",model_name="m"} 1
vllm:time_to_first_token_seconds_bucket{engine="1",le="0.5",model_name="m"} 1
vllm:time_to_first_token_seconds_bucket{engine="1",le="+Inf",model_name="m"} 1
vllm:time_to_first_token_seconds_sum{engine="1",model_name="m"} 0.05
vllm:time_to_first_token_seconds_count{engine="1",model_name="m"} 1
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{le="0.01",model_name="m"} 5
vllm:inter_token_latency_seconds_bucket{le="+Inf",model_name="m"} 6
vllm:inter_token_latency_seconds_sum{model_name="m"} 0.09
vllm:inter_token_latency_seconds_count{model_name="m"} 6
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="m"} 99
vllm:time_per_output_token_seconds_sum{model_name="m"} 99
vllm:time_per_output_token_seconds_count{model_name="m"} 99
"""
for _name in ("request_time_per_output_token", "e2e_request_latency", "request_queue_time",
              "request_prefill_time", "request_decode_time"):
    VLLM_HISTOGRAMS += (f"# TYPE vllm:{_name}_seconds histogram\n"
                        f'vllm:{_name}_seconds_bucket{{le="0.3"}} 1\n'
                        f'vllm:{_name}_seconds_bucket{{le="+Inf"}} 1\n'
                        f"vllm:{_name}_seconds_sum 0.2\nvllm:{_name}_seconds_count 1\n")
VLLM_HISTOGRAMS += """\
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{model_name="m"} 200
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{model_name="m"} 50
"""

# What llama.cpp's llama-server answers on /metrics with --metrics, laid out as its server
# writes it (HELP, TYPE, one unlabelled sample each; n_busy_slots_per_decode is typed a
# counter). A test double of the text: the llama.cpp installed here is llama-cpp-python,
# whose server has no /metrics, and llama-server cannot be installed.
LLAMA_SERVER = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 640
# HELP llamacpp:prompt_seconds_total Prompt process time
# TYPE llamacpp:prompt_seconds_total counter
llamacpp:prompt_seconds_total 0.8
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 160
# HELP llamacpp:tokens_predicted_seconds_total Predict process time
# TYPE llamacpp:tokens_predicted_seconds_total counter
llamacpp:tokens_predicted_seconds_total 3.2
# HELP llamacpp:n_decode_total Total number of llama_decode() calls
# TYPE llamacpp:n_decode_total counter
llamacpp:n_decode_total 80
# HELP llamacpp:n_tokens_max Largest observed n_tokens.
# TYPE llamacpp:n_tokens_max counter
llamacpp:n_tokens_max 64
# HELP llamacpp:n_busy_slots_per_decode Average number of busy slots per llama_decode() call
# TYPE llamacpp:n_busy_slots_per_decode counter
llamacpp:n_busy_slots_per_decode 2
# HELP llamacpp:prompt_tokens_seconds Average prompt throughput in tokens/s.
# TYPE llamacpp:prompt_tokens_seconds gauge
llamacpp:prompt_tokens_seconds 800
# HELP llamacpp:predicted_tokens_seconds Average generation throughput in tokens/s.
# TYPE llamacpp:predicted_tokens_seconds gauge
llamacpp:predicted_tokens_seconds 50
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 1
"""


MS = 1_000_000
TTFT_NS, ITL_NS, CHUNKS = 100 * MS, 20 * MS, 5


def sample_batch(seq: int, n: int, timeouts: int) -> bytes:
    """n measured requests (TTFT 100 ms, 4 gaps of 20 ms); the last `timeouts` timed out."""
    cols = samples.empty_columns(n)
    intended = np.arange(n, dtype=np.int64) * 10 * MS
    cols["req_id"][:] = np.arange(n) + seq * n
    cols["intended_ns"][:] = intended
    cols["send_ns"][:] = intended + 10_000
    cols["first_ns"][:] = intended + TTFT_NS
    cols["end_ns"][:] = intended + TTFT_NS + (CHUNKS - 1) * ITL_NS
    cols["chunks"][:] = CHUNKS
    cols["tokens_in"][:] = 32
    cols["tokens_out"][:] = CHUNKS
    cols["token_source"][:] = samples.TokenSource.SERVER
    cols["status"][:] = 200
    cols["phase"][:] = samples.Phase.MEASURED
    cols["slot"][:] = -1
    if timeouts:
        cols["error"][-timeouts:] = samples.ErrorClass.TIMEOUT
        cols["chunks"][-timeouts:] = 0
        cols["first_ns"][-timeouts:] = 0
        cols["tokens_out"][-timeouts:] = 0
    ok_rows = n - timeouts
    return samples.encode(samples.SampleBatch(
        run="run-c", trial="trial-1", executor="exec-0", node="nodeC", seq=seq, interval=seq,
        epoch_ns=time.time_ns(), columns=cols,
        itl_ns=np.full(ok_rows * (CHUNKS - 1), ITL_NS, dtype=np.int64)))
