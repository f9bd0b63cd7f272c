"""A capacity-search recipe against the simulator whose answer its timing model predicts.

The simulator decodes a step in decode_base_ms + decode_ms_per_seq x running sequences, and in
closed loop at concurrency C all C sequences run (docs/simulator.md), so the median ITL is
base + per_seq x C. The highest C whose median ITL is within a limit L is therefore
floor((L - base) / per_seq); L sits half a step between two concurrencies, so scheduling noise
of a few ms cannot flip a verdict. Used by the local run (tests/integration) and the Slurm job
(tests/cluster).
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
