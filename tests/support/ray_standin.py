"""The vllm plugin's service_config for Ray across the server nodes with `vllm serve` played by
standin_vllm.py (a TEST DOUBLE: vLLM's CPU build refuses the Ray executor backend). Ray itself
is real, from the suite's venv; the stand-in checks the cluster's size and, given a vLLM CPU
service_config, execs the real vLLM server on the head node without the distributed flags."""
from __future__ import annotations

import sys
from pathlib import Path

STANDIN = Path(__file__).with_name("standin_vllm.py")


def standin_ray_config(report: Path, nodes: int, temp_root: str,
                       vllm_config: dict | None = None, parallel_sizes: bool = True) -> dict:
    """Ray over `nodes` server nodes (one CPU each, temp dirs below `temp_root`), with
    pipeline parallel `nodes` unless not `parallel_sizes` (a validated recipe allows no more
    than the server nodes' GPUs: none here); the stand-in writes what it saw to `report`.
    With `vllm_config` (a plain vLLM CPU service_config) the stand-in then execs that
    config's Python as vLLM."""
    config = dict(vllm_config or {})
    env = {**config.get("env", {}), "HPCBENCH_STANDIN_EXPECT_NODES": nodes,
           "HPCBENCH_STANDIN_REPORT": str(report), "RAY_USAGE_STATS_ENABLED": 0}
    if vllm_config:
        env["HPCBENCH_STANDIN_VLLM_PYTHON"] = str(vllm_config["python"])
    distributed = {"enabled": True, "backend": "ray",
                   "ray": {"num_cpus_per_node": 1, "temp_root": temp_root}}
    if parallel_sizes:
        distributed.update(tensor_parallel_size=1, pipeline_parallel_size=nodes)
    return {**config,
            "python": [sys.executable, str(STANDIN)],
            "ray_python": sys.executable,
            "ray_command": str(Path(sys.executable).parent / "ray"),
            "distributed": distributed,
            "env": env}
