"""A lost executor: the trial is flagged and the session goes on (`on_executor_loss: continue`)
or stops with E002 (`stop`); what was measured stays in the results either way."""
import json
import signal
import subprocess
import sys

import psutil
import pytest
import yaml

from tests.support.sim_process import served_requests, sim_process
from tests.support.waiting import wait_until


def executor_process(run: subprocess.Popen, agent_id: str):
    for child in psutil.Process(run.pid).children(recursive=True):
        try:
            if agent_id in child.cmdline() and "hpcbench.executor.agent" in child.cmdline():
                return child
        except psutil.NoSuchProcess:
            continue
    return None


@pytest.mark.parametrize("policy, status", [("continue", 14), ("stop", 12)])
def test_killing_an_executor_mid_trial(tmp_path, policy, status):
    with sim_process(tmp_path) as url:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({
            "scenario": "loss", "endpoints": [url], "on_executor_loss": policy,
            "workload": {"service": "simulator", "model": "sim-model", "duration": "4s",
                         "warmup": "0s", "concurrency": 4, "load": {"pattern": "closed"},
                         "dataset": {"input_tokens": {"distribution": "fixed", "mean": 8},
                                     "output_tokens": {"distribution": "fixed", "mean": 4}}},
            "monitoring": {"enabled": False}}))
        run = subprocess.Popen([sys.executable, "-m", "hpcbench.coordinator.cli", "run",
                                str(recipe), "--results-dir", str(tmp_path / "results"),
                                "--session", "s", "--executors", "2", "--no-live",
                                "--no-report"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            victim = wait_until(lambda: executor_process(run, "executor-1"), timeout=30,
                                what="executor-1 process")
            wait_until(lambda: served_requests(url) > 10, timeout=30, what="load")
            victim.send_signal(signal.SIGKILL)
            out, err = run.communicate(timeout=90)
        finally:
            run.kill()
    assert run.returncode == status, out + err
    record = json.loads((tmp_path / "results" / "loss" / "s" / "session.json").read_text())
    if policy == "continue":
        assert record["state"] == "COMPLETED"
        [trial] = record["trials"]
        assert trial["passed"] is False
        assert "executors lost: executor-1" in err
    else:
        assert record["state"] == "FAILED" and "E002" in record["error"]
        assert "executor-1" in err
    assert record["integrity"]["batches"] > 0     # what executor-0 measured is kept
