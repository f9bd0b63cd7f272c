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
