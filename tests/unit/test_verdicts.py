"""A trial's verdict (decided once, from everything known) and session.json over every run of a
session: attempts, runs, and totals of what is on disk for the final attempts."""
import json
from types import SimpleNamespace

from hpcbench.coordinator.session import session_file, verdicts
from hpcbench.coordinator.session.results import ResultsWriter, read_samples
from hpcbench.proto.samples import encode
from tests.support.sample_batches import make_batch
from tests.support.trial_dirs import run_trial

OVERALL_OK = {"requests": 100, "error_total": 1}


def test_the_verdict_weighs_threshold_missing_batches_integrity_and_lost_executors():
    assert verdicts.decide(OVERALL_OK, 0.01) == {
        "verdict": "passed", "passed": True, "problems": [], "error_threshold": 0.01}
    failed = verdicts.decide(
        {"requests": 100, "error_total": 2}, 0.01, missing={"executor-0": 2},
        integrity_growth={"missing_batches": 1, "unstored_batches": 3, "unwritten_intervals": 0,
                          "duplicate_batches": 5},
        lost_executors={"executor-1": {"reason": "killed", "stored": 10, "unsent_at_least": 4,
                                       "in_flight_at_last_heartbeat": 2}})
    assert failed["verdict"] == "failed" and failed["passed"] is False
    assert failed["problems"] == [
        "error rate 2.00% above error_threshold 1.00%",
        "batches never arrived: {'executor-0': 2}",
        "1 batch(es) lost in transit (sequence gaps still open at the end)",
        "3 batch(es) received but their raw samples not stored",
        "executor-1 lost (killed): 10 samples stored, at least 4 recorded but never sent, "
        "2 requests in flight; intervals from its loss on are partial"]
    # duplicates are dropped, not lost: they fail nothing
    assert verdicts.decide(OVERALL_OK, 0.01, integrity_growth={"duplicate_batches": 9})["passed"]
    assert verdicts.decide({"requests": 0, "error_total": 0}, 1.0)["problems"] == [
        "no measured request finished"]


def trials(*ids):
    return [SimpleNamespace(id=trial_id, index=index, params={"concurrency": index})
            for index, trial_id in enumerate(ids)]


def run_entry(number, state="COMPLETED", trials_run=(), skipped=()):
    return {"run": number, "started": "t0", "ended": "t1", "state": state, "error": None,
            "trials_run": list(trials_run), "trials_skipped": list(skipped),
            "elapsed_s": 1.0, "phases": []}


def test_session_json_lists_attempts_and_runs_and_totals_the_final_attempts_on_disk(tmp_path):
    writer = ResultsWriter(tmp_path, "scenario", "s")
    run_trial(writer, "a", batches=4, session_run=1)
    run_trial(writer, "b", batches=3, problems=("executor-1 lost",), session_run=1)
    cut = writer.open_trial("c", {"trial": "c"}, session_run=1)
    cut.append_batch(encode(make_batch(0, 7, trial="c")))
    cut.abort("stopped: SIGTERM received")
    first = session_file.build(session_id="s", scenario="scenario", session_dir=writer.session_dir,
                               trials=trials("a", "b", "c", "d"), runs=[run_entry(1, "STOPPED")],
                               server_version="1.0", ended=True)
    assert [(t["trial_id"], t["verdict"], t["passed"]) for t in first["trials"]] == [
        ("a", "passed", True), ("b", "failed", False), ("c", "cut", False),
        ("d", "not-run", False)]
    assert first["trials"][2]["problems"] == ["stopped: SIGTERM received"]
    assert first["passed"] is False and first["state"] == "STOPPED"
    assert first["totals"] | {"covers": ""} == {
        "covers": "", "trials": 4, "passed": 1, "failed": 1, "cut": 1, "not_run": 1,
        "batches": 4 + 3 + 1, "samples": first["totals"]["samples"],
        "requests": 4 * 50 + 3 * 50 + 7, "measured_requests": 4 * 50 + 3 * 50,
        "unreadable": []}

    # run 2 measures b, c and d again: b and c keep their first attempts
    for trial_id in ("b", "c", "d"):
        run_trial(writer, trial_id, batches=2, session_run=2)
    runs = session_file.earlier_runs(json.loads(json.dumps(first)))
    assert session_file.next_run_number(runs) == 2
    second = session_file.build(
        session_id="s", scenario="scenario", session_dir=writer.session_dir,
        trials=trials("a", "b", "c", "d"),
        runs=[*runs, run_entry(2, trials_run=("b", "c", "d"), skipped=("a",))],
        server_version="1.0", ended=True)
    assert second["passed"] is True and second["state"] == "COMPLETED"
    assert [run["run"] for run in second["runs"]] == [1, 2] and second["skipped"] == 1
    b = second["trials"][1]
    assert [(a["attempt"], a["verdict"], a["session_run"], a["directory"])
            for a in b["attempts"]] == [(1, "failed", 1, "b/attempts/1"), (2, "passed", 2, "b")]
    assert [t["earlier_run"] for t in second["trials"]] == [True, False, False, False]
    # the totals are what the final attempts hold on disk, not what run 2 received
    on_disk = [list(read_samples(writer.session_dir / name / "samples.msgpack"))
               for name in "abcd"]
    assert second["totals"]["batches"] == sum(len(batches) for batches in on_disk) == 4 + 3 * 2
    assert second["totals"]["samples"] == sum(batch.n + len(batch.itl_ns)
                                              for batches in on_disk for batch in batches)
    assert second["totals"]["requests"] == second["totals"]["measured_requests"] == 4 * 50 + 300


def test_a_run_that_never_recorded_its_end_is_interrupted_and_old_records_are_one_run():
    running = {"runs": [run_entry(1), {**run_entry(2, state="RUNNING"), "ended": None}]}
    runs = session_file.earlier_runs(running)
    assert [run["state"] for run in runs] == ["COMPLETED", "INTERRUPTED"]
    assert "never recorded its end" in runs[1]["error"]
    assert session_file.next_run_number(runs) == 3

    older = {"session": "s", "state": "COMPLETED", "error": None, "skipped": 1,
             "trials": [{"trial_id": "a", "passed": True, "earlier_run": True},
                        {"trial_id": "b", "passed": True, "earlier_run": False}],
             "integrity": {"batches": 10}, "phases": [{"state": "RUNNING", "at_s": 1.0}]}
    [legacy] = session_file.earlier_runs(older)
    assert legacy["run"] == 1 and legacy["trials_run"] == ["b"]
    assert legacy["trials_skipped"] == ["a"] and legacy["integrity"] == {"batches": 10}
    assert "older hpcbench" in legacy["note"]
    assert session_file.earlier_runs({}) == []


def test_while_a_run_measures_its_trial_is_running_and_no_totals_are_counted(tmp_path):
    writer = ResultsWriter(tmp_path, "scenario", "s")
    run_trial(writer, "a", problems=("no measured request finished",))
    writer.open_trial("a", {"trial": "a"}, session_run=2)
    record = session_file.build(
        session_id="s", scenario="scenario", session_dir=writer.session_dir, trials=trials("a"),
        runs=[run_entry(1), {**run_entry(2, state="RUNNING"), "ended": None}],
        server_version=None, ended=False, running="a")
    assert record["state"] == "RUNNING" and record["totals"] is None
    assert [a["verdict"] for a in record["trials"][0]["attempts"]] == ["failed", "running"]


def test_a_slurm_job_reports_and_exits_by_the_final_attempts(tmp_path):
    """run.sbatch's body: job.json gives each trial's newest attempt (state, verdict, attempts)
    and the job exits E004 only when a final attempt failed."""
    from hpcbench.coordinator.launch.sbatch_job import SlurmJob
    from hpcbench.coordinator.session.lifecycle import Session
    from hpcbench.proto import control_v1_pb2 as pb

    writer = ResultsWriter(tmp_path, "scenario", "42")
    run_trial(writer, "a", problems=("executor-1 lost",))
    run_trial(writer, "a", session_run=2)                       # re-measured: passed
    run_trial(writer, "b", problems=("error rate 9%",))
    writer.open_trial("c", {"trial": "c"}).abort("E002: executors lost")
    job = SlurmJob(tmp_path / "recipe.yaml")
    job.run_dir = writer.session_dir
    results = [{"trial_id": "a", "passed": True, "problems": []},
               {"trial_id": "b", "passed": False, "problems": ["error rate 9%"]}]
    job.session = SimpleNamespace(trials=trials("a", "b", "c", "d"), state=pb.COMPLETED,
                                  error=None, all_results=lambda: results, search=None)
    job.session.trial_problems = lambda: Session.trial_problems(job.session)   # the real rule
    assert [(t["id"], t["state"], t["verdict"], t["attempts"]) for t in job._trial_states()] == [
        ("a", "finished", "passed", 2), ("b", "finished", "failed", 1),
        ("c", "partial", "cut", 1), ("d", "not-run", "not-run", 0)]
    assert job._finish_session() == 14 and "b: error rate 9%" in job.record["error"]
    results.pop()
    assert job._finish_session() == 0 and job.record["state"] == "completed"
