"""Failures mid-run: what was measured stays in the results, the exit code names the failure.

A lost executor flags its trial and the session goes on (`on_executor_loss: continue`) or stops
with E002 (`stop`); a server that dies mid-sweep stops the session with E001."""
import json
import signal
import subprocess
import sys

import psutil
import pytest
import yaml

from tests.support.sim_process import served_requests, sim_process
from tests.support.waiting import wait_until


def child_process(run: subprocess.Popen, *words: str):
    """The descendant of `run` whose command line has all of `words`, or None."""
    for child in psutil.Process(run.pid).children(recursive=True):
        try:
            if all(word in child.cmdline() for word in words):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def executor_process(run: subprocess.Popen, agent_id: str):
    return child_process(run, agent_id, "hpcbench.executor.agent")


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
        run = subprocess.Popen([sys.executable, "-m", "hpcbench.coordinator.cli.main", "run",
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
        assert "executor-1 lost (its process exited with status -9 (SIGKILL))" in err
    else:
        assert record["state"] == "FAILED" and "E002" in record["error"]
        assert "executor-1" in err
    assert record["runs"][-1]["integrity"]["batches"] > 0   # what executor-0 measured is kept


def test_a_server_dying_mid_sweep_fails_the_session_keeping_finished_trials(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "scenario": "server-loss",
        "workload": {"service": "simulator", "model": "sim-model", "duration": "1s",
                     "warmup": "0s", "concurrency": [2, 3], "load": {"pattern": "closed"},
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 8},
                                 "output_tokens": {"distribution": "fixed", "mean": 4}}},
        "monitoring": {"enabled": False}}))
    session_dir = tmp_path / "results" / "server-loss" / "s"
    run = subprocess.Popen([sys.executable, "-m", "hpcbench.coordinator.cli.main", "run",
                            str(recipe), "--results-dir", str(tmp_path / "results"),
                            "--session", "s", "--no-live", "--no-report"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(list(session_dir.glob("*/trial.done"))) == 1, timeout=60,
                   what="the first trial to finish")
        server = wait_until(lambda: child_process(run, "sim", "--host"), timeout=10,
                            what="the simulator process")
        server.send_signal(signal.SIGKILL)
        out, err = run.communicate(timeout=90)
    finally:
        run.kill()
    assert run.returncode == 11, out + err
    assert "error E001: service exited with status" in err
    record = json.loads((session_dir / "session.json").read_text())
    assert record["state"] == "FAILED" and record["passed"] is False
    # the finished trial is kept with its verdict; the one the crash cut says why, no verdict
    assert [trial["verdict"] for trial in record["trials"]] == ["passed", "cut"]
    assert record["trials"][1]["problems"][0].startswith("E001: service exited with status")
    assert len(list(session_dir.glob("*/trial.done"))) == 1
    assert len(list(session_dir.glob("*/trial.stopped"))) == 1
