"""Real demo runs for the report and compare tests, made once per test session.

Each is `hpcbench run` of a shortened local-sim recipe (simulator, executor, monitor and
coordinator as real processes): a concurrency sweep [2, 8] with two repetitions of 1.5 s
trials. Run "faulty" injects simulator errors and disconnects (so the report has errors by
class); run "slow" decodes four times slower without faults (so compare has a real regression).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

SCENARIO = "report-demo"
_SERVICE_CONFIGS = {
    "faulty": {"error_rate": 0.05, "disconnect_rate": 0.03, "seed": 7},
    "slow": {"decode_base_ms": 40.0},
}
_made: dict[str, Path] = {}


def recipe(service_config: dict) -> dict:
    return {
        "scenario": SCENARIO, "runtime": "process", "orchestration": {"mode": "local"},
        "repetitions": 2,
        "workload": {
            "service": "simulator", "model": "sim-llama", "api": "openai-chat", "stream": True,
            "duration": "1.5s", "warmup": "0.5s", "request_timeout": "10s",
            "concurrency": [2, 8], "load": {"pattern": "closed"}, "error_threshold": 0.5,
            "dataset": {"kind": "synthetic", "seed": 42,
                        "input_tokens": {"distribution": "fixed", "mean": 64},
                        "output_tokens": {"distribution": "fixed", "mean": 16}},
            "slo": {"ttft": "100ms", "itl": "50ms"},
        },
        "servers": {"service_config": service_config},
        "monitoring": {"interval": "250ms"},
    }


def hpcbench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def demo_run(tmp_path_factory, name: str) -> Path:
    """The run directory of demo run `name` ("faulty" or "slow"), made on first use."""
    if name not in _made:
        base = tmp_path_factory.mktemp(f"run-{name}")
        path = base / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe(_SERVICE_CONFIGS[name])))
        done = hpcbench("run", str(path), "--results-dir", str(base / "results"),
                        "--session", name, "--no-live")
        assert done.returncode == 0, done.stdout + done.stderr
        _made[name] = base / "results" / SCENARIO / name
    return _made[name]
