"""An executor that loses its coordinator stops generating load by itself, within its lease.

SIGSTOP freezes `hpcbench run` mid-trial: it neither answers heartbeats nor dies (so no
parent-death signal reaches its children). The executors must notice through the lease alone.
"""
from __future__ import annotations

import re
import signal
import urllib.request

import pytest

from tests.support.fault_runs import (
    EXECUTOR_0,
    EXECUTOR_1,
    component_pids,
    started_runs,
    wait_second_trial_measuring,
    write_recipe,
)
from tests.support.faults import alive, record
from tests.support.sim_process import sim_process
from tests.support.waiting import wait_until


@pytest.fixture
def runs():
    with started_runs() as start:
        yield start


@pytest.mark.parametrize("duration", ["12s", "3s"], ids=["lease-ends-mid-trial",
                                                        "lease-ends-after-the-trial"])
def test_executors_that_lose_their_coordinator_stop_the_load_within_the_lease(tmp_path, runs,
                                                                              duration):
    """SIGSTOP freezes the coordinator (no answer, no parent-death signal): the executors'
    heartbeats go unanswered, and past the lease they stop generating load and exit, whether
    the lease runs out during the trial or while they wait to report its end."""
    with sim_process(tmp_path) as url:
        recipe = write_recipe(tmp_path, url, duration)
        run = runs(recipe, tmp_path / "results", "frozen", "--executors", "2")
        wait_second_trial_measuring(run)
        pids = component_pids(run, EXECUTOR_0, EXECUTOR_1)
        run.process.send_signal(signal.SIGSTOP)
        record("faults_injected")
        try:
            # lease 5 s (coordinator/session/lifecycle.py) plus heartbeat and exit time
            wait_until(lambda: not any(alive(pid) for pid in pids.values()), timeout=20,
                       what="executors to give up on their frozen coordinator")
            wait_until(lambda: simulator_in_flight(url) == 0, timeout=10,
                       what="the simulator to have no request in flight")
        finally:
            run.process.kill()
        logs = run.results / "faults" / "frozen" / "logs"
        assert "coordinator lost" in (logs / "executor-0.log").read_text()


def simulator_in_flight(url: str) -> int:
    """Requests the simulator is serving or queueing now (its vLLM-style gauges)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    gauges = re.findall(r"^vllm:num_requests_(?:running|waiting)(?:\{[^}]*\})? (\S+)$", text,
                        re.M)
    assert gauges, "simulator /metrics lacks vllm:num_requests_running/waiting"
    return int(sum(float(value) for value in gauges))
