"""Re-runs of a session on real processes: verdicts are never rewritten.

A trial's verdict is decided once and stored in its trial.done. Running the same session id
again measures every trial whose final attempt failed or was cut, keeps the earlier attempt
whole under <trial>/attempts/N, skips the passed ones byte for byte, and session.json then
lists every run, every attempt and totals that match the files on disk. A re-run with nothing
left to measure changes no file.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from hpcbench.common.errors import ERROR_CODES
from hpcbench.coordinator.session.results import read_samples
from tests.support.fault_runs import (
    EXECUTOR_1,
    assert_accounted,
    digest,
    started_runs,
    wait_second_trial_measuring,
    write_recipe,
)
from tests.support.faults import record

# what each coordinator process renews in the run directory to be reachable: not results
COORDINATOR_FILES = {"coordinator.json", "control.token"}


@pytest.fixture
def runs():
    with started_runs() as start:
        yield start


def test_a_trial_failed_by_a_killed_executor_is_measured_again_by_a_rerun(tmp_path, runs):
    recipe = write_recipe(tmp_path, concurrency=(2, 4, 6), on_executor_loss="continue")
    results = tmp_path / "results"
    session_dir = results / "faults" / "rerun"

    # run 1: executor-1 killed while the second trial measures; the third runs without it
    first_run = runs(recipe, results, "rerun", "--executors", "2")
    passed_dir = wait_second_trial_measuring(first_run)
    os.kill(first_run.component_pid(*EXECUTOR_1), signal.SIGKILL)
    record("faults_injected")
    assert first_run.wait(120) == ERROR_CODES["E004"][1], first_run.output
    session = json.loads((session_dir / "session.json").read_text())
    assert [(t["trial_id"], t["verdict"]) for t in session["trials"]] == [
        ("concurrency-2", "passed"), ("concurrency-4", "failed"), ("concurrency-6", "failed")]
    assert session["passed"] is False and [run["state"] for run in session["runs"]] == [
        "COMPLETED"]
    failed = ["concurrency-4", "concurrency-6"]
    for trial_id in failed:                     # the verdict is stored with the trial
        done = json.loads((session_dir / trial_id / "trial.done").read_text())
        assert done["verdict"] == "failed" and done["attempt"] == 1
        assert any("executor-1 lost" in problem for problem in done["problems"])
    before = {trial_id: digest(session_dir / trial_id) for trial_id in failed}
    kept = digest(passed_dir)

    # run 2, same session id: the failed trials are measured again, the passed one skipped
    second_run = runs(recipe, results, "rerun", "--executors", "2")
    assert second_run.wait(120) == 0, second_run.output       # the new verdicts: passed
    record("reruns")
    assert "completed: 2 trial(s) run, 1 skipped" in second_run.output
    assert digest(passed_dir) == kept                          # not one byte rewritten
    relabelled = 0
    for trial_id in failed:
        trial_dir = session_dir / trial_id
        # the first attempt's whole directory, byte for byte
        assert digest(trial_dir / "attempts" / "1") == before[trial_id]
        record("earlier_attempts_kept")
        done = json.loads((trial_dir / "trial.done").read_text())
        assert done["verdict"] == "passed" and done["attempt"] == 2, done
        relabelled += done["attempt"] == 1
        assert_accounted(trial_dir)
        record("trials_remeasured")
    record("failed_relabelled_passed", relabelled)

    session = json.loads((session_dir / "session.json").read_text())
    assert session["state"] == "COMPLETED" and session["passed"] is True
    assert [(run["run"], run["state"], run["trials_run"], run["trials_skipped"])
            for run in session["runs"]] == [
        (1, "COMPLETED", ["concurrency-2", *failed], []),
        (2, "COMPLETED", failed, ["concurrency-2"])]
    attempts = {t["trial_id"]: [(a["attempt"], a["verdict"], a["session_run"], a["directory"])
                                for a in t["attempts"]] for t in session["trials"]}
    assert attempts == {
        "concurrency-2": [(1, "passed", 1, "concurrency-2")],
        **{trial_id: [(1, "failed", 1, f"{trial_id}/attempts/1"), (2, "passed", 2, trial_id)]
           for trial_id in failed}}
    # the totals are the final attempts' files on disk, not what run 2 received
    totals = session["totals"]
    final = [list(read_samples(session_dir / trial_id / "samples.msgpack"))
             for trial_id in ("concurrency-2", *failed)]
    assert totals["batches"] == sum(len(batches) for batches in final)
    assert totals["samples"] == sum(batch.n + len(batch.itl_ns) for batches in final
                                    for batch in batches)
    assert totals["requests"] == sum(batch.n for batches in final for batch in batches)
    assert totals["measured_requests"] == sum(
        json.loads((session_dir / trial_id / "summary.json").read_text())["overall"]["requests"]
        for trial_id in ("concurrency-2", *failed))
    assert totals["batches"] > session["runs"][1]["integrity"]["batches"]
    assert (totals["passed"], totals["failed"], totals["unreadable"]) == (3, 0, [])
    assert "Measured more than once" in (session_dir / "report.html").read_text()


def test_a_rerun_of_an_all_passed_session_changes_no_file(tmp_path, runs):
    recipe = write_recipe(tmp_path, duration="1s")
    results = tmp_path / "results"
    session_dir = results / "faults" / "again"
    assert runs(recipe, results, "again").wait(120) == 0
    before = files(session_dir)
    assert {"session.json", "report.html", "concurrency-2/trial.done"} <= set(before)

    rerun = runs(recipe, results, "again")
    assert rerun.wait(120) == 0, rerun.output
    record("reruns")
    assert "completed: 0 trial(s) run, 2 skipped" in rerun.output
    assert files(session_dir) == before


def files(directory: Path) -> dict[str, tuple[str, int]]:
    """Every file below `directory` but the coordinator's own: its hash and mtime."""
    hashes = digest(directory)
    return {name: (hashes[name], (directory / name).stat().st_mtime_ns) for name in hashes
            if name not in COORDINATOR_FILES}
