"""Monitors are agents of the session: registered, heartbeating under the lease, stopped by the
coordinator, and ending by themselves when their coordinator is lost.

The first two tests run a real `hpcbench run` (simulator, executor, monitor, coordinator as
processes); the others talk to a real `hpcbench-monitor` process from a coordinator in the test
process, whose lease is short (1 s) so that losing it is quick.
"""
import csv
import os
import re
import signal
import subprocess
import sys

import pytest
import zmq

from hpcbench.common.agent_link import EXIT_LOST
from hpcbench.coordinator.bus.publisher import subscribe
from hpcbench.coordinator.control.agents import AgentRegistry
from hpcbench.coordinator.control.client import ControlClient, locate
from hpcbench.coordinator.control.server import Coordinator
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto import telemetry
from tests.support.fault_runs import MONITOR, started_runs, write_recipe
from tests.support.faults import alive
from tests.support.monitor_process import MONITOR as MONITOR_SCRIPT
from tests.support.waiting import wait_until

SESSION = "monitor-test"


# -- in a real `hpcbench run` -----------------------------------------------------------------
@pytest.fixture
def runs():
    with started_runs() as start:
        yield start


def monitor_agent(client: ControlClient):
    """The session's monitor agent as Control.Status lists it (None before it registers)."""
    return next((agent for agent in client.status().agents if agent.role == pb.MONITOR), None)


def start_run(tmp_path, runs, session: str, duration: str):
    """`hpcbench run` of two trials on a simulator it deploys; returns (run, session dir,
    a Control client) once the run's coordinator answers."""
    run = runs(write_recipe(tmp_path, duration=duration), tmp_path / "results", session)
    session_dir = tmp_path / "results" / "faults" / session

    def session_address():
        if (session_dir / "coordinator.json").exists():
            target = locate(run_dir=session_dir)
            return target if target.session_id else None  # written again once it has a session
        return run.process.poll() is not None

    target = wait_until(session_address, timeout=60, what="the run's coordinator.json")
    assert run.process.poll() is None, run.output
    return run, session_dir, ControlClient(target)


def test_a_run_lists_its_monitor_which_ends_by_itself_when_the_coordinator_freezes(tmp_path,
                                                                                    runs):
    run, session_dir, client = start_run(tmp_path, runs, "listed", "60s")
    with client:
        # registered IDLE, BUSY from its first heartbeat on
        agent = wait_until(lambda: (found := monitor_agent(client)) and found.state == pb.BUSY
                           and found, timeout=60, what="monitor agent heartbeating")
        assert (agent.agent_id, agent.node) == ("monitor-localhost", "localhost")
        assert agent.last_heartbeat_age_s < 5.0           # within the session's lease
    shown = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "status",
                            "--run-dir", str(session_dir)], capture_output=True, text=True,
                           timeout=60)
    assert re.search(r"agent +monitor-localhost on localhost \(monitor\): busy, heartbeat "
                     r"\d+\.\d+s ago", shown.stdout), shown.stdout + shown.stderr

    # a frozen coordinator answers no heartbeat and sends no parent-death signal: the
    # monitor must notice through its lease alone, and leave its CSV complete
    pid = run.component_pid(*MONITOR)
    assert pid, run.output
    run.process.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: not alive(pid), timeout=30,
                   what="the monitor to give up on its frozen coordinator")
    finally:
        run.process.kill()
    assert "coordinator lost beyond the lease" in (session_dir / "logs" /
                                                   "monitor-localhost.log").read_text()
    assert_complete_csv(session_dir / "telemetry" / "localhost.csv")


def test_a_monitor_whose_heartbeats_stop_is_lost_and_the_session_goes_on(tmp_path, runs):
    run, session_dir, client = start_run(tmp_path, runs, "silent", "6s")
    with client:
        wait_until(lambda: monitor_agent(client), timeout=60, what="monitor agent")
        pid = run.component_pid(*MONITOR)
        os.kill(pid, signal.SIGSTOP)                     # alive, but no more heartbeats
        lost = wait_until(lambda: (agent := monitor_agent(client)).state == pb.LOST and agent,
                          timeout=30, what="the monitor marked lost")
        assert lost.last_heartbeat_age_s > 5.0
        status = client.status()
        assert status.state not in (pb.FAILED, pb.STOPPED), status
        # the loss is an event on the bus (a late subscriber gets the last one of its kind)
        bus = subscribe(status.bus_endpoint, ["event"], idle_timeout_s=15)
        try:
            event = next(message["data"] for message in bus
                         if message["data"].get("event") == "monitor_lost")
        finally:
            bus.close()
        assert event["agent"] == "monitor-localhost" and event["session"] == "silent"
    os.kill(pid, signal.SIGKILL)                         # and now it is gone for good
    assert run.wait(120) == 0, run.output                # every trial ran and passed
    assert '"state": "COMPLETED"' in (session_dir / "session.json").read_text()


# -- one monitor process, a coordinator in the test ----------------------------------------
@pytest.fixture
def telemetry_pull():
    """A PULL socket standing where the aggregator would, to see the monitor's telemetry."""
    socket = zmq.Context.instance().socket(zmq.PULL)
    socket.setsockopt(zmq.LINGER, 0)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield socket, f"tcp://127.0.0.1:{port}"
    finally:
        socket.close()


@pytest.fixture
def coordinator(tmp_path, telemetry_pull):
    server = Coordinator(tmp_path / "run").start()
    registry = AgentRegistry(SESSION, telemetry_pull[1], lease_s=1.0, heartbeat_interval_s=0.2)
    server.agents.add_registry(registry)
    server.registry = registry
    try:
        yield server
    finally:
        server.stop(grace_s=0)


@pytest.fixture
def monitors():
    """A starter of `hpcbench-monitor --coordinator ...` processes, killed after the test."""
    started: list[subprocess.Popen] = []

    def start(coordinator, csv_path, *extra: str, session: str = SESSION) -> subprocess.Popen:
        env = {**os.environ, "HPCBENCH_SESSION": session,
               "HPCBENCH_TOKEN_FILE": str(coordinator.token_file)}
        process = subprocess.Popen([MONITOR_SCRIPT, "--coordinator", coordinator.address,
                                    "--node", "node7", "--interval", "100ms", "--csv",
                                    str(csv_path), *extra], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()
            process.wait()


def registered_monitor(coordinator):
    [record] = wait_until(lambda: coordinator.registry.agents(pb.MONITOR), timeout=30,
                          what="monitor registration")
    return record


def test_a_stop_command_ends_the_monitor_with_its_csv_flushed(tmp_path, coordinator, monitors,
                                                            telemetry_pull):
    path = tmp_path / "node7.csv"
    monitor = monitors(coordinator, path)
    record = registered_monitor(coordinator)
    assert (record.node, record.pid) == ("node7", monitor.pid)
    # telemetry goes to the endpoint the coordinator named at registration
    socket, _ = telemetry_pull
    assert socket.poll(30_000), "no telemetry from the registered monitor"
    assert telemetry.decode(socket.recv())["node"] == "node7"
    wait_until(lambda: path.exists() and len(path.read_text().splitlines()) >= 3, timeout=30,
               what="CSV rows")
    coordinator.registry.send(record.agent_id, pb.STOP)
    assert monitor.wait(timeout=30) == 0
    stderr = monitor.stderr.read()
    assert "STOP from the coordinator" in stderr
    samples = int(re.search(r"stopped after (\d+) samples", stderr).group(1))
    assert assert_complete_csv(path) == samples          # every sample taken is in the file


def test_a_monitor_ends_by_itself_when_its_coordinator_is_gone(tmp_path, coordinator, monitors):
    path = tmp_path / "node7.csv"
    monitor = monitors(coordinator, path)
    registered_monitor(coordinator)
    coordinator.stop(grace_s=0)                          # the coordinator vanishes
    assert monitor.wait(timeout=60) == EXIT_LOST          # lease 1 s, then it gives up
    assert "coordinator lost beyond the lease" in monitor.stderr.read()
    assert assert_complete_csv(path) >= 1


def test_a_monitor_of_an_unknown_session_says_so_and_exits(tmp_path, coordinator, monitors):
    monitor = monitors(coordinator, tmp_path / "node7.csv", session="no-such-session")
    assert monitor.wait(timeout=60) == 18                # E008
    stderr = monitor.stderr.read()
    assert "E008" in stderr and "no session 'no-such-session'" in stderr
    assert coordinator.registry.agents() == []


def assert_complete_csv(path) -> int:
    """The CSV's rows all have the header's columns (none cut short); returns their number."""
    text = path.read_text()
    assert text.endswith("\n"), "the last row was cut short"
    header, *rows = list(csv.reader(text.splitlines()))
    assert header[0] == "timestamp" and rows, text
    assert all(len(row) == len(header) for row in rows), text
    return len(rows)
