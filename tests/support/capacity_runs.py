"""A capacity-search recipe against the simulator whose answer its timing model predicts.

The simulator decodes a step in decode_base_ms + decode_ms_per_seq x running sequences, and in
closed loop at concurrency C all C sequences run (docs/simulator.md), so the median ITL is
base + per_seq x C. The highest C whose median ITL is within a limit L is therefore
floor((L - base) / per_seq); L sits half a step between two concurrencies, so scheduling noise
of a few ms cannot flip a verdict. Used by the local run (tests/integration) and the Slurm job
(tests/cluster).

Open loop: with a constant decode step (decode_ms_per_seq 0) a request holds one of
max_num_seqs slots for prefill + (tokens - 1) x step, so the server completes at most
max_num_seqs / that many requests per second. Constant arrivals below that rate never wait
(TTFT is the prefill); above it the queue, and TTFT with it, grows through the whole trial, so
a TTFT limit well above the prefill is crossed just above that rate.
"""
from __future__ import annotations

import math

DECODE_BASE_MS, DECODE_PER_SEQ_MS = 10.0, 10.0
LIMIT_MS = 65.0


def expected_capacity(limit_ms: float = LIMIT_MS) -> int:
    """The simulator's highest concurrency with median ITL within `limit_ms`."""
    return math.floor((limit_ms - DECODE_BASE_MS) / DECODE_PER_SEQ_MS)


def itl_at(concurrency: float) -> float:
    """The simulator's modelled ITL (ms) at `concurrency`."""
    return DECODE_BASE_MS + DECODE_PER_SEQ_MS * concurrency


SLOTS, STEP_MS, PREFILL_MS, OUTPUT_TOKENS = 4, 20.0, 5.8, 11   # prefill 5 ms + 16 x 0.05 ms


def modelled_rate_capacity() -> float:
    """Requests/s the simulator of `rate_search_recipe` completes at most."""
    return SLOTS / ((PREFILL_MS + (OUTPUT_TOKENS - 1) * STEP_MS) / 1e3)


def rate_search_recipe() -> dict:
    """An open-loop search for the highest constant rate with TTFT p90 within 100 ms, from 8
    to 64 requests/s at resolution 2, against a simulator of SLOTS slots and a constant step.
    Probes last 2 s, so every load near the answer gives the 35 requests a p90 needs to be
    bounded from above (docs/capacity-search.md)."""
    recipe = search_recipe()
    recipe["workload"]["load"] = {"pattern": "constant"}
    recipe["workload"]["duration"] = "2s"
    recipe["workload"]["dataset"]["output_tokens"]["mean"] = OUTPUT_TOKENS
    recipe["servers"]["service_config"] = {"max_num_seqs": SLOTS, "decode_base_ms": STEP_MS,
                                           "decode_ms_per_seq": 0}
    recipe["search"] = {"axis": "load.rate", "low": 8, "high": 64, "resolution": 2,
                        "slo": {"ttft": {"percentile": 90, "max": "100ms"}}}
    return recipe


def search_recipe(low: int = 2, high: int = 16, **top) -> dict:
    """A search for the highest concurrency with ITL p50 within LIMIT_MS, from `low` to `high`
    at resolution 1, in 1.5 s probes; `top` adds or replaces top-level keys."""
    return {
        "scenario": "capacity", "runtime": "process", "orchestration": {"mode": "local"},
        "workload": {
            "service": "simulator", "model": "sim-llama", "duration": "1.5s",
            "warmup": "0.3s", "request_timeout": "10s", "load": {"pattern": "closed"},
            "dataset": {"input_tokens": {"distribution": "fixed", "mean": 16},
                        "output_tokens": {"distribution": "fixed", "mean": 16}},
        },
        "servers": {"service_config": {"decode_base_ms": DECODE_BASE_MS,
                                       "decode_ms_per_seq": DECODE_PER_SEQ_MS}},
        "search": {"axis": "concurrency", "low": low, "high": high, "resolution": 1,
                   "slo": {"itl": {"percentile": 50, "max": f"{LIMIT_MS:g}ms"}},
                   "max_error_rate": 0.01},
        "monitoring": {"interval": "500ms"},
        **top,
    }
