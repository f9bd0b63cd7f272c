"""Leases on the Agent plane: an executor that loses its coordinator stops its load by itself,
and a coordinator marks an agent that stopped heartbeating LOST."""
import signal
import subprocess
import sys

import pytest
import zmq

from hpcbench.coordinator.control.agents import AgentRegistry
from hpcbench.coordinator.control.server import Coordinator
from hpcbench.executor.agent import EXIT_LOST
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto.trial import TrialConfig
from tests.support.sim_process import sim_process
from tests.support.waiting import wait_until


@pytest.fixture
def sample_pull():
    """A PULL socket standing where the aggregator would (the test only needs batches to go)."""
    socket = zmq.Context.instance().socket(zmq.PULL)
    socket.setsockopt(zmq.LINGER, 0)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        socket.close()


@pytest.fixture
def coordinator(tmp_path, sample_pull):
    server = Coordinator(tmp_path / "run").start()
    registry = AgentRegistry("lease-test", sample_pull, executor_count=1, lease_s=1.0,
                             heartbeat_interval_s=0.2)
    server.agents.add_registry(registry)
    server.registry = registry
    try:
        yield server
    finally:
        server.stop(grace_s=0)


def start_agent(coordinator) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hpcbench.executor.agent",
                             "--coordinator", coordinator.address, "--session", "lease-test",
                             "--token-file", str(coordinator.token_file),
                             "--agent-id", "executor-0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def start_long_trial(registry: AgentRegistry, url: str) -> None:
    workload = {"service": "simulator", "model": "sim-model", "duration": 600.0, "warmup": 0.0,
                "request_timeout": 10.0, "concurrency": 2, "load": {"pattern": "closed"},
                "dataset": {"input_tokens": {"distribution": "fixed", "mean": 8},
                            "output_tokens": {"distribution": "fixed", "mean": 4}}}
    config = TrialConfig(run_id="lease-test", trial_id="t0", executor_index=0, executor_count=1,
                         node="localhost", targets=[url], workload=workload)
    registry.send("executor-0", pb.CONFIGURE, "t0", config.encode())
    registry.send("executor-0", pb.START, "t0")


def test_an_executor_stops_generating_load_when_its_coordinator_is_lost(tmp_path, coordinator):
    from tests.support.sim_process import served_requests

    with sim_process(tmp_path) as url:
        agent = start_agent(coordinator)
        try:
            wait_until(lambda: coordinator.registry.agents(pb.EXECUTOR), timeout=30,
                       what="executor registration")
            start_long_trial(coordinator.registry, url)
            wait_until(lambda: served_requests(url) > 5, timeout=30, what="load on the simulator")
            coordinator.stop(grace_s=0)     # the coordinator vanishes mid-trial
            assert agent.wait(timeout=60) == EXIT_LOST
            # it ended a 600 s trial by itself, within its lease (1 s) plus shutdown
            assert "coordinator lost beyond the lease" in agent.stdout.read()
        finally:
            agent.kill()
            agent.wait()


def test_the_coordinator_marks_a_silent_agent_lost(coordinator):
    agent = start_agent(coordinator)
    try:
        wait_until(lambda: coordinator.registry.agents(pb.EXECUTOR), timeout=30,
                   what="executor registration")
        assert coordinator.registry.lost_agents() == []
        agent.send_signal(signal.SIGSTOP)    # alive but silent: no heartbeats
        lost = wait_until(coordinator.registry.lost_agents, timeout=10, what="lease expiry")
        assert [record.agent_id for record in lost] == ["executor-0"]
        info = coordinator.registry.info()[0]
        assert info.state == pb.LOST and info.last_heartbeat_age_s > 1.0
    finally:
        agent.kill()
        agent.wait()


def test_a_duplicate_agent_id_is_refused(coordinator):
    first = start_agent(coordinator)
    try:
        wait_until(lambda: coordinator.registry.agents(pb.EXECUTOR), timeout=30,
                   what="executor registration")
        second = start_agent(coordinator)
        assert second.wait(timeout=30) == 18
        assert "ALREADY_EXISTS" in second.stdout.read()
    finally:
        first.kill()
        first.wait()


def test_hpcbench_executor_with_coordinator_serves_as_an_agent(coordinator):
    """The form run.sbatch uses: session and token from the environment."""
    import os

    env = {**os.environ, "HPCBENCH_SESSION": "lease-test",
           "HPCBENCH_TOKEN_FILE": str(coordinator.token_file)}
    agent = subprocess.Popen([sys.executable, "-c",
                              "import sys; from hpcbench.executor.cli import main; sys.exit(main())",
                              "--coordinator", coordinator.address, "--executor-id", "exec-a",
                              "--node", "node7"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        [record] = wait_until(lambda: coordinator.registry.agents(pb.EXECUTOR), timeout=30,
                              what="executor registration")
        assert (record.agent_id, record.node, record.executor_index) == ("exec-a", "node7", 0)
        coordinator.registry.send("exec-a", pb.SHUTDOWN)
        assert agent.wait(timeout=30) == 0, agent.stdout.read()
    finally:
        agent.kill()
        agent.wait()
