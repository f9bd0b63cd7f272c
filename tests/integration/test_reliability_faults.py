"""Faults on real processes during `hpcbench run` (simulator, executors, monitor, coordinator).

Each test starts a real run of two trials, hurts one component at a known point (the second
trial's measured window), and then checks what the issue promises: the fault is detected and
classified, nothing hangs, the finished first trial is byte-identical to before the fault,
every stored batch is accounted for (samples on disk = the summary's counts, no batch missing
from an executor that reported), and no process is left behind.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from hpcbench.common.errors import ERROR_CODES
from hpcbench.coordinator.bus.publisher import subscribe
from hpcbench.coordinator.control.client import ControlClient, locate
from hpcbench.coordinator.session.results import read_samples
from tests.support.fault_runs import (
    EXECUTOR_0,
    EXECUTOR_1,
    MONITOR,
    assert_accounted,
    assert_no_leftovers,
    component_pids,
    digest,
    started_runs,
    wait_second_trial_measuring,
    write_recipe,
)
from tests.support.faults import descendants, record
from tests.support.sim_process import sim_process


@pytest.fixture
def runs():
    with started_runs() as start:
        yield start

@pytest.mark.parametrize("policy", ["continue", "stop"])
def test_an_executor_killed_mid_trial_is_detected_and_the_recipe_decides(tmp_path, runs, policy):
    recipe = write_recipe(tmp_path, concurrency=(2, 4, 6), on_executor_loss=policy)
    run = runs(recipe, tmp_path / "results", "kill", "--executors", "2")
    first = wait_second_trial_measuring(run)
    before = digest(first)
    pids = component_pids(run, EXECUTOR_0, EXECUTOR_1,
                          MONITOR)
    os.kill(pids[EXECUTOR_1], signal.SIGKILL)
    record("faults_injected")
    status = run.wait(90)
    session_dir = run.results / "faults" / "kill"
    assert digest(first) == before                    # the finished trial is untouched
    assert_accounted(first)
    session = json.loads((session_dir / "session.json").read_text())
    second = session_dir / "concurrency-4"
    if policy == "stop":
        assert status == ERROR_CODES["E002"][1], run.output     # E002: executors lost
        assert session["state"] == "FAILED" and "executor-1" in str(session["error"])
        assert not (second / "trial.done").exists()       # a re-run measures it again
    else:
        # the session went on: the second trial is finished but flagged, not passed
        assert (second / "trial.done").exists(), run.output
        trial = next(t for t in session["trials"] if t["trial_id"] == "concurrency-4")
        assert trial["passed"] is False
        result = json.loads((second / "summary.json").read_text())
        assert_accounted(second)
        executors = {batch.executor for batch in read_samples(second / "samples.msgpack")}
        assert "executor-0" in executors
        assert "executor-1 lost (its process exited with status -9 (SIGKILL))" in run.output
        assert result["integrity"]["missing_by_executor"].get("executor-0", 0) == 0
        assert_loss_accounted(second, "executor-1")
        # the next trial runs without it and says so: its share is missing from the start
        third = session_dir / "concurrency-6"
        account = assert_loss_accounted(third, "executor-1")
        assert account["reason"] == ("lost in an earlier trial: its process exited with "
                                     "status -9 (SIGKILL)") and account["stored"] == 0
        window = json.loads((third / "summary.json").read_text())["window"]
        assert account["lost_at_ns"] <= window["start_ns"]
        assert not next(t for t in session["trials"]
                        if t["trial_id"] == "concurrency-6")["passed"]
        assert_accounted(third)
    assert_no_leftovers(pids.values())


def assert_loss_accounted(trial_dir: Path, executor: str) -> dict:
    """The trial's account of a lost executor: its rows on disk are what it counts as stored,
    and what its last heartbeat said it had recorded beyond them is reported unsent."""
    summary = json.loads((trial_dir / "summary.json").read_text())
    account = summary["integrity"]["lost_executors"][executor]
    stored = sum(batch.n for batch in read_samples(trial_dir / "samples.msgpack")
                 if batch.executor == executor)
    assert account["stored"] == stored, account
    assert account["unsent_at_least"] == max(account["recorded_at_last_heartbeat"] - stored, 0)
    assert account["in_flight_at_last_heartbeat"] >= 0
    assert summary["integrity"]["missing_executors_since_ns"][executor] == account["lost_at_ns"]
    return account


def test_an_executor_frozen_mid_trial_is_lost_by_its_lease_and_its_intervals_are_partial(
        tmp_path, runs):
    """SIGSTOP: the executor is alive and holds its sockets but says nothing, so only its lease
    can tell. With on_executor_loss: continue the session announces it on the bus, reports
    the trial's intervals partial from then on, flags the trial and accounts for the loss."""
    run = runs(write_recipe(tmp_path, duration="8s", on_executor_loss="continue"),
               tmp_path / "results", "frozen", "--executors", "2")
    first = wait_second_trial_measuring(run)
    before = digest(first)
    session_dir = run.results / "faults" / "frozen"
    with ControlClient(locate(run_dir=session_dir)) as client:
        bus = subscribe(client.status().bus_endpoint, ["event", "snapshot"], idle_timeout_s=30)
        pid = run.component_pid(*EXECUTOR_1)
        os.kill(pid, signal.SIGSTOP)
        record("faults_injected")
        seen: dict[str, dict] = {}
        try:
            for message in bus:
                data = message["data"]
                if data.get("event") == "executor_lost":
                    seen["lost"] = data
                elif message["topic"] == "snapshot" and data.get("partial"):
                    seen["partial"] = data
                if len(seen) == 2:
                    break
        finally:
            bus.close()
    assert seen["lost"]["agent"] == "executor-1", seen
    assert seen["lost"]["reason"].startswith("no heartbeat for"), seen["lost"]
    assert seen["partial"]["missing_executors"] == ["executor-1"]
    assert seen["partial"]["trial"] == "concurrency-4"
    assert run.wait(120) == ERROR_CODES["E004"][1], run.output    # a trial did not pass
    second = session_dir / "concurrency-4"
    assert (second / "trial.done").exists(), run.output
    account = assert_loss_accounted(second, "executor-1")
    assert account["reason"].startswith("no heartbeat for")
    assert_accounted(second)
    assert digest(first) == before
    assert_no_leftovers([pid])                      # the teardown killed it, frozen as it was


def test_a_server_crash_mid_stream_is_classified_and_the_run_ends(tmp_path, runs):
    with sim_process(tmp_path) as url:
        recipe = write_recipe(tmp_path, url)
        run = runs(recipe, tmp_path / "results", "crash", "--executors", "1")
        first = wait_second_trial_measuring(run)
        before = digest(first)
        pids = component_pids(run, EXECUTOR_0)
        # the simulator is the test's own child: find it and kill it mid-stream
        simulator = [pid for pid in descendants(os.getpid()) if b" sim " in _cmdline(pid)]
        assert simulator
        os.kill(simulator[0], signal.SIGKILL)
        record("faults_injected")
        run.wait(90)
    assert digest(first) == before
    second = run.results / "faults" / "crash" / "concurrency-4"
    assert (second / "trial.done").exists(), run.output
    summary = assert_accounted(second)
    errors = summary["overall"]["errors"]
    assert {"connection_refused", "connection_reset"} & {name for name, count in errors.items()
                                                         if count}, errors
    assert_no_leftovers(pids.values())


def test_a_stalled_server_ends_requests_by_their_timeout(tmp_path, runs):
    with sim_process(tmp_path) as url:
        recipe = write_recipe(tmp_path, url)
        run = runs(recipe, tmp_path / "results", "stall", "--executors", "1")
        first = wait_second_trial_measuring(run)
        before = digest(first)
        simulator = [pid for pid in descendants(os.getpid()) if b" sim " in _cmdline(pid)]
        os.kill(simulator[0], signal.SIGSTOP)       # alive, holding its sockets, silent
        record("faults_injected")
        try:
            run.wait(90)
        finally:
            os.kill(simulator[0], signal.SIGCONT)
    second = run.results / "faults" / "stall" / "concurrency-4"
    assert (second / "trial.done").exists(), run.output
    summary = assert_accounted(second)
    assert summary["overall"]["errors"].get("timeout", 0) > 0, summary["overall"]["errors"]
    assert digest(first) == before
    assert_accounted(first)


def test_sigterm_to_the_coordinator_stops_cleanly_and_keeps_finished_trials(tmp_path, runs):
    recipe = write_recipe(tmp_path)
    run = runs(recipe, tmp_path / "results", "term", "--executors", "2")
    first = wait_second_trial_measuring(run)
    before = digest(first)
    pids = component_pids(run, EXECUTOR_0, EXECUTOR_1,
                          MONITOR)
    run.process.send_signal(signal.SIGTERM)
    record("faults_injected")
    status = run.wait(60)
    assert status == 130, run.output
    assert digest(first) == before
    session_dir = run.results / "faults" / "term"
    session = json.loads((session_dir / "session.json").read_text())
    assert session["state"] == "STOPPED"
    assert not (session_dir / "concurrency-4" / "trial.done").exists()
    assert_no_leftovers(pids.values())
    # the interrupted trial's samples received before the stop were flushed to its partial
    # file: every batch the aggregator accepted is on disk (or counted as not stored)
    interrupted = list(read_samples(session_dir / "concurrency-4" / "samples.msgpack.partial"))
    integrity = session["runs"][-1]["integrity"]
    on_disk = len(list(read_samples(first / "samples.msgpack"))) + len(interrupted)
    assert interrupted and on_disk + integrity["unstored_batches"] == integrity["batches"]

    cut = digest(session_dir / "concurrency-4")
    assert "trial.stopped" in cut and "samples.msgpack.partial" in cut

    # a re-run of the session skips the finished trial (not one byte rewritten) and measures
    # the interrupted one again, in full, keeping the cut attempt whole under attempts/1
    resumed = runs(recipe, tmp_path / "results", "term", "--executors", "2")
    assert resumed.wait(120) == 0, resumed.output
    assert digest(first) == before
    assert_accounted(session_dir / "concurrency-4")
    assert digest(session_dir / "concurrency-4" / "attempts" / "1") == cut
    session = json.loads((session_dir / "session.json").read_text())
    assert session["skipped"] == 1 and session["passed"] is True
    assert [run["state"] for run in session["runs"]] == ["STOPPED", "COMPLETED"]
    [_, second] = session["trials"]
    assert [attempt["verdict"] for attempt in second["attempts"]] == ["cut", "passed"]
    assert second["attempts"][0]["reason"] == "stopped: SIGTERM received"


def test_sigkill_of_the_coordinator_leaves_no_component_running(tmp_path, runs):
    """The executors lose their coordinator: they stop generating load and exit by themselves
    (kernel parent-death signal locally, the lease on a cluster: tests/integration/test_session_lease.py)."""
    recipe = write_recipe(tmp_path)
    run = runs(recipe, tmp_path / "results", "kill9", "--executors", "2")
    first = wait_second_trial_measuring(run)
    before = digest(first)
    pids = component_pids(run, EXECUTOR_0, EXECUTOR_1,
                          MONITOR)
    run.process.kill()
    record("faults_injected")
    run.wait(10)
    assert_no_leftovers(pids.values())
    assert digest(first) == before


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""
