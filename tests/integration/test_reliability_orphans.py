"""No orphans (issue #12): every process of a run dies with its parent, even under SIGKILL.

`hpcbench run` with the simulator at `workers: 2` is a tree: the coordinator; its executor,
monitor and simulator children (parent-death signal, armed by common/process_group.py's
launcher); the simulator's forked workers (they arm their own). The test SIGKILLs the
simulator's parent and the coordinator while the workers serve, and waits, bounded, until every
process it saw in the tree is gone. Survivors are counted in `make reliability`'s
`leftover_processes` (then killed, so that a failure here does not load the machine).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import psutil
import pytest

from tests.support.fault_runs import started_runs, write_recipe
from tests.support.faults import alive, record
from tests.support.waiting import WaitTimeout, wait_until

TRIAL_MEASURED = re.compile(r"trial 1/\d+ .* measured")
WORKERS = 2


@pytest.fixture
def runs():
    with started_runs() as start:
        yield start


def _listening_ports(process: psutil.Process) -> set[int]:
    try:
        return {c.laddr.port for c in process.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN}
    except psutil.Error:
        return set()


def _served(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sim/stats", timeout=5) as answer:
            return int(json.loads(answer.read())["served"])
    except OSError:
        return 0


def test_sigkill_of_the_run_and_the_simulator_leaves_no_process_of_the_tree(tmp_path, runs):
    recipe = write_recipe(tmp_path, duration="60s", concurrency=(4,),
                          servers={"service_config": {"workers": WORKERS}})
    run = runs(recipe, tmp_path / "results", "orphans", "--executors", "1")
    coordinator = psutil.Process(run.process.pid)

    def workers_of(process: psutil.Process) -> list[psutil.Process]:
        try:
            return [child for child in process.children() if "sim" in child.cmdline()]
        except psutil.Error:
            return []

    def simulator() -> psutil.Process | None:
        for child in coordinator.children():
            try:
                if "sim" in child.cmdline() and len(workers_of(child)) == WORKERS:
                    return child
            except psutil.Error:
                continue
        return None

    # the workers serve: the trial measures, every worker listens on the port and the
    # simulator has answered requests (its counters are the workers' sum)
    wait_until(lambda: TRIAL_MEASURED.search(run.output) or run.process.poll() is not None,
               timeout=90, what="the trial's measured window")
    assert run.process.poll() is None, run.output
    parent = wait_until(simulator, timeout=30, what="the simulator and its workers")
    workers = workers_of(parent)
    ports = [_listening_ports(worker) for worker in workers]
    assert len(workers) == WORKERS and ports[0] and all(p == ports[0] for p in ports), ports
    port = next(iter(ports[0]))
    wait_until(lambda: _served(port) > 0, timeout=30, what="requests served by the workers")

    tree = [coordinator, *coordinator.children(recursive=True)]
    names = {process.pid: " ".join(process.cmdline())[:120] for process in tree
             if process.is_running()}
    assert len(names) >= 1 + 3 + WORKERS, names     # coordinator, executor, monitor, sim

    # the simulator's parent first, so it cannot stop its workers politely; then the run
    parent.send_signal(signal.SIGKILL)
    coordinator.send_signal(signal.SIGKILL)
    record("faults_injected", 2)
    try:
        wait_until(lambda: not any(alive(pid) for pid in names), timeout=20,
                   what="every process of the run's tree to exit")
    except WaitTimeout:
        survivors = {pid: name for pid, name in names.items() if alive(pid)}
        record("leftover_processes", len(survivors))
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise AssertionError(f"left running after SIGKILL: {survivors}") from None
    # and the tree was hpcbench's own components only: no multiprocessing resource tracker,
    # which the simulator's shared memory used to start and which outlived it
    assert not [name for name in names.values() if "resource_tracker" in name], names


def test_what_the_ray_head_supervisor_started_dies_with_it_under_sigkill(tmp_path):
    """servers/ray_cluster.py's head supervisor runs `ray start --head --block`, a cluster-size
    wait and then the server. Killed with SIGKILL it can stop none of them: they go with it by
    their parent-death signal. (Stand-ins for Ray's commands: this is about the supervisor.)"""
    blocker = ["sleep", "600"]              # a child that runs until something ends it
    argv = [sys.executable, "-m", "hpcbench.servers.ray_cluster", "head",
            "--ray-start", json.dumps(blocker), "--wait", json.dumps(blocker),
            "--serve", json.dumps(["true"])]
    with open(tmp_path / "head.log", "wb") as log:
        head = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        supervisor = psutil.Process(head.pid)

        def started() -> list[psutil.Process]:
            try:   # the launcher has exec'd the command once its name is `sleep`
                children = [child for child in supervisor.children()
                            if child.cmdline()[:1] == ["sleep"]]
            except psutil.Error:
                return []
            return children if len(children) == 2 else []

        children = wait_until(started, timeout=30, what="ray start and the wait to run")
        pids = [child.pid for child in children]
        head.kill()
        record("faults_injected")
        head.wait()
        try:
            wait_until(lambda: not any(alive(pid) for pid in pids), timeout=20,
                       what="the head supervisor's children to exit")
        except WaitTimeout:
            survivors = [pid for pid in pids if alive(pid)]
            record("leftover_processes", len(survivors))
            for pid in survivors:
                os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"left running after SIGKILL: {survivors}") from None
    finally:
        if head.poll() is None:
            head.kill()
            head.wait()
