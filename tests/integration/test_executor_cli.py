"""The standalone `hpcbench-executor` process: samples file and summary, two targets, clear E006
errors (the sinks are checked in process by tests/unit/test_executor_output.py)."""
from __future__ import annotations

import json
import subprocess

import pytest

from hpcbench.executor.sinks import read_batches
from hpcbench.servers.simulator import start_simulator


def test_standalone_cli_writes_samples_and_prints_a_summary(tmp_path, cli_env):
    out = tmp_path / "run.bin"
    with start_simulator(mode="fixed", ttft_ms=5, itl_ms=1) as sim:
        result = subprocess.run(
            ["hpcbench-executor", "--target", sim.url, "--api", "ollama-chat", "--model",
             "sim-model", "--concurrency", "3", "--duration", "1s", "--output-tokens", "6",
             "--ignore-eos", "--out", str(out)],
            env=cli_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    batches = list(read_batches(out))
    assert summary["requests"] == sum(batch.n for batch in batches) > 0
    assert summary["ok"] == summary["requests"] and summary["errors"] == {}
    assert summary["ttft_ms"]["p50"] >= 5.0
    assert summary["batches"] == len(batches)


def test_cli_with_two_targets_sends_request_k_to_target_k_mod_2(tmp_path, cli_env):
    out = tmp_path / "run.bin"
    with start_simulator(mode="fixed", ttft_ms=1, itl_ms=1, record_truth=True) as first, \
            start_simulator(mode="fixed", ttft_ms=1, itl_ms=1, record_truth=True) as second:
        result = subprocess.run(
            ["hpcbench-executor", "--target", first.url, "--target", second.url, "--model",
             "sim-model", "--concurrency", "3", "--duration", "0", "--max-requests", "40",
             "--output-tokens", "2", "--ignore-eos", "--out", str(out)],
            env=cli_env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        served = [{int(record["client_request_id"].rsplit("-", 1)[1], 16)
                   for record in sim.truth} for sim in (first, second)]
    req_ids = {int(i) for batch in read_batches(out) for i in batch.columns["req_id"]}
    assert served[0] | served[1] == req_ids and len(req_ids) >= 40
    assert {i % 2 for i in served[0]} == {0} and {i % 2 for i in served[1]} == {1}


@pytest.mark.parametrize("argv, message", [
    (["--api", "openai-chat"], "--target URL and --model NAME are required"),
    (["--target", "localhost:80", "--model", "m"], "target URL"),
    (["--target", "http://127.0.0.1:9", "--model", "m", "--duration", "later"],
     "workload.duration"),
])
def test_cli_rejects_bad_arguments_with_e006(argv, message, cli_env):
    result = subprocess.run(["hpcbench-executor", *argv], env=cli_env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "error E006" in result.stderr and message in result.stderr
