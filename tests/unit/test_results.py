"""Results writer: trial layout, lossless raw samples, atomic writes, verdicts stored with the
trial, resume by skipping passed trials and keeping earlier attempts."""
import csv
import json
import os

import pytest
import yaml
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.files import write_atomic
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.session import results
from hpcbench.coordinator.session.results import (
    ResultsWriter,
    TrialFinishedError,
    archive_attempt,
    finished_trials,
    passed_trials,
    read_outcome,
    read_samples,
    read_summary,
    trial_attempts,
)
from hpcbench.proto.samples import encode
from tests.support.sample_batches import make_batch
from tests.support.trial_dirs import RUN, run_trial


def test_trial_directory_holds_every_result_file(tmp_path):
    writer = ResultsWriter(tmp_path, "my-scenario", "session-1")
    trial_dir, payloads = run_trial(writer, "t1", recipe={"service": {"name": "simulator"}})

    assert trial_dir == tmp_path / "my-scenario" / "session-1" / "t1"
    assert sorted(path.name for path in trial_dir.iterdir()) == sorted(
        ["recipe.yaml", "samples.msgpack", "histograms.hlog", "summary.json", "summary.csv",
         "logs", "trial.done"])
    assert yaml.safe_load((trial_dir / "recipe.yaml").read_text()) == \
        {"service": {"name": "simulator"}}
    # raw samples are the accepted batches byte for byte, the duplicate not repeated
    assert (trial_dir / "samples.msgpack").read_bytes() == b"".join(payloads)
    assert [batch.seq for batch in read_samples(trial_dir / "samples.msgpack")] == [0, 1, 2, 3]

    summary = read_summary(trial_dir)
    assert summary["overall"]["requests"] == 200
    assert summary["integrity"]["duplicate_batches"] == 1
    assert summary["exact"]["ttft"]["count"] == summary["overall"]["latency"]["ttft"]["count"]
    assert set(summary["histograms"]) == {"ttft", "itl", "tpot", "e2e", "ttfr", "ttfa", "dispatch_lag",
                                          "queue_time"}
    assert HdrHistogram.decode(summary["histograms"]["ttft"]).get_total_count() == 200

    with open(trial_dir / "summary.csv") as source:
        rows = list(csv.DictReader(source))
    assert {(row["metric"], row["source"]) for row in rows if row["metric"] == "ttft"} == \
        {("ttft", "hdr"), ("ttft", "exact")}
    assert all(row["requests"] == "200" for row in rows)

    reader = HistogramLogReader(str(trial_dir / "histograms.hlog"),
                                HdrHistogram(1_000, 3_600_000_000_000, 3))
    ttft_total = 0
    while (interval := reader.get_next_interval_histogram()) is not None:
        if interval.get_tag() == "ttft":
            ttft_total += interval.get_total_count()
    assert ttft_total == 200  # the intervals add up to the whole trial
    assert not list(trial_dir.glob("*.partial")) and not list(trial_dir.glob(".*.tmp"))


def tree(directory):
    """Every file below `directory` (relative path -> bytes)."""
    return {str(path.relative_to(directory)): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_the_verdict_is_stored_in_trial_done_and_a_passed_trial_is_never_rewritten(tmp_path):
    writer = ResultsWriter(tmp_path, "scenario", "session")
    trial_dir, _ = run_trial(writer, "t1", session_run=3)
    done = json.loads((trial_dir / results.DONE).read_text())
    assert done["verdict"] == "passed" and done["passed"] is True and done["problems"] == []
    assert done["attempt"] == 1 and done["session_run"] == 3 and done["error_threshold"] == 0.01
    assert read_outcome(trial_dir)["verdict"] == "passed"
    assert passed_trials(writer.session_dir) == {"t1"} == finished_trials(writer.session_dir)
    before = tree(trial_dir)

    with pytest.raises(TrialFinishedError, match="never rewritten"):
        writer.open_trial("t1", {"trial": "t1"})
    assert tree(trial_dir) == before
    assert passed_trials(tmp_path / "no-such-session") == set()


def test_a_finish_without_a_decided_verdict_is_recorded_failed(tmp_path):
    trial = ResultsWriter(tmp_path, "scenario", "session").open_trial("t1", {})
    aggregator = Aggregator(run_id=RUN)
    aggregator.open_trial("t1", sink=trial)
    aggregator.ingest(encode(make_batch(0, 5)))
    trial.finish(aggregator.close_trial("t1"))
    assert read_outcome(trial.trial_dir)["verdict"] == "failed"


def test_a_failed_trial_is_measured_again_and_its_first_attempt_kept_whole(tmp_path):
    writer = ResultsWriter(tmp_path, "scenario", "session")
    trial_dir, _ = run_trial(writer, "t1", problems=("executor-1 lost",))
    assert passed_trials(writer.session_dir) == set() and finished_trials(writer.session_dir) \
        == {"t1"}
    first = tree(trial_dir)

    again_dir, payloads = run_trial(writer, "t1", batches=2, session_run=2)
    # the first attempt's whole directory, byte for byte, under attempts/1
    assert tree(trial_dir / "attempts" / "1") == first
    assert {name for name in tree(trial_dir) if not name.startswith("attempts/")} == {
        "recipe.yaml", "samples.msgpack", "histograms.hlog", "summary.json", "summary.csv",
        "trial.done"}
    assert (again_dir / "samples.msgpack").read_bytes() == b"".join(payloads)
    attempts = trial_attempts(trial_dir)
    assert [(a["attempt"], a["verdict"], a["session_run"]) for a in attempts] == [
        (1, "failed", 1), (2, "passed", 2)]
    assert attempts[0]["problems"] == ["executor-1 lost"]
    assert attempts[0]["directory"] == trial_dir / "attempts" / "1"
    assert attempts[1]["directory"] == trial_dir
    assert passed_trials(writer.session_dir) == {"t1"}


def test_a_cut_attempt_is_kept_with_why_it_stopped_and_measured_again(tmp_path):
    writer = ResultsWriter(tmp_path, "scenario", "session")
    interrupted = writer.open_trial("t2", {"trial": "t2"}, session_run=1)
    interrupted.append_batch(encode(make_batch(0, 5, trial="t2")))
    (interrupted.logs_dir / "executor.log").write_text("from the interrupted attempt\n")
    interrupted.abort("stopped: SIGTERM received")
    assert read_outcome(interrupted.trial_dir) | {"stopped_ns": 0} == {
        "trial": "t2", "attempt": 1, "session_run": 1, "stopped_ns": 0,
        "reason": "stopped: SIGTERM received", "verdict": "cut"}
    assert finished_trials(writer.session_dir) == set() == passed_trials(writer.session_dir)
    cut = tree(interrupted.trial_dir)
    assert "samples.msgpack.partial" in cut and "trial.stopped" in cut

    resumed_dir, payloads = run_trial(writer, "t2", batches=2, session_run=2)  # afresh
    assert (resumed_dir / "samples.msgpack").read_bytes() == b"".join(payloads)
    assert list((resumed_dir / "logs").iterdir()) == []
    assert tree(resumed_dir / "attempts" / "1") == cut
    assert [(a["attempt"], a["verdict"]) for a in trial_attempts(resumed_dir)] == [
        (1, "cut"), (2, "passed")]


def test_an_attempt_left_without_any_marker_is_cut_and_numbered_after_the_kept_ones(tmp_path):
    """The coordinator was killed: neither trial.done nor trial.stopped."""
    writer = ResultsWriter(tmp_path, "scenario", "session")
    trial_dir, _ = run_trial(writer, "t1", problems=("error rate 9% above",))
    killed = writer.open_trial("t1", {"trial": "t1"}, session_run=2)
    killed.append_batch(encode(make_batch(0, 5)))
    for handle in (killed._samples, killed._hlog):   # a killed coordinator: no marker
        handle.close()
    outcome = read_outcome(trial_dir)
    assert outcome["verdict"] == "cut" and "interrupted" in outcome["reason"]
    assert [(a["attempt"], a["verdict"]) for a in trial_attempts(trial_dir)] == [
        (1, "failed"), (2, "cut")]
    run_trial(writer, "t1", session_run=3)
    assert [(a["attempt"], a["verdict"]) for a in trial_attempts(trial_dir)] == [
        (1, "failed"), (2, "cut"), (3, "passed")]
    assert json.loads((trial_dir / "trial.done").read_text())["attempt"] == 3


def test_an_interrupted_move_of_an_attempt_is_finished_under_the_same_number(tmp_path):
    writer = ResultsWriter(tmp_path, "scenario", "session")
    trial_dir, _ = run_trial(writer, "t1", problems=("no measured request finished",))
    first = tree(trial_dir)
    # a crash after the markers and one file moved into attempts/.1.moving
    staging = trial_dir / "attempts" / ".1.moving"
    staging.mkdir(parents=True)
    os.replace(trial_dir / "trial.done", staging / "trial.done")
    os.replace(trial_dir / "summary.csv", staging / "summary.csv")
    assert read_outcome(trial_dir)["verdict"] == "cut"     # never looks finished half-moved
    assert passed_trials(writer.session_dir) == set()
    assert archive_attempt(trial_dir) == 1
    assert tree(trial_dir / "attempts" / "1") == first
    assert [path.name for path in trial_dir.iterdir()] == ["attempts"]
    assert archive_attempt(trial_dir) == 1                 # nothing left to move


def test_a_trial_done_of_an_older_hpcbench_is_judged_by_the_rule_on_reading(tmp_path):
    writer = ResultsWriter(tmp_path, "scenario", "session")
    recipe = {"workload": {"error_threshold": 0.5}}
    trial_dir, _ = run_trial(writer, "old", recipe=recipe)
    lost = run_trial(writer, "lost", recipe=recipe)[0]
    for directory in (trial_dir, lost):     # as an older hpcbench wrote it: no verdict
        (directory / "trial.done").write_text(json.dumps({"trial": directory.name,
                                                          "run": RUN, "requests": 200}))
    summary = read_summary(lost)
    summary["integrity"]["lost_executors"] = {"executor-1": {
        "reason": "gone", "stored": 3, "unsent_at_least": 1, "in_flight_at_last_heartbeat": 0}}
    (lost / "summary.json").write_text(json.dumps(summary))
    assert read_outcome(trial_dir)["verdict"] == "passed"
    outcome = read_outcome(lost)
    assert outcome["verdict"] == "failed" and outcome["decided"] == "on reading"
    assert outcome["problems"][0].startswith("executor-1 lost (gone)")
    assert passed_trials(writer.session_dir) == {"old"}


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    write_atomic(target, json.dumps({"version": 1}))

    def disk_full(_descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_atomic(target, json.dumps({"version": 2}))
    assert json.loads(target.read_text()) == {"version": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["summary.json"]  # no temp left over


def test_unsafe_names_are_rejected_with_the_field(tmp_path):
    with pytest.raises(HpcbenchError) as raised:
        ResultsWriter(tmp_path, "../escape", "session")
    assert raised.value.code == "E006" and "scenario" in raised.value.message
    with pytest.raises(HpcbenchError, match="trial"):
        ResultsWriter(tmp_path, "scenario", "session").open_trial("a/b", {})


def test_partial_files_are_not_final_names_until_finish(tmp_path):
    trial = ResultsWriter(tmp_path, "scenario", "session").open_trial("t1", {})
    trial.append_batch(encode(make_batch(0, 5)))
    names = {path.name for path in trial.trial_dir.iterdir()}
    assert results.SAMPLES not in names and results.SAMPLES + results.PARTIAL in names
    assert results.DONE not in names
    trial.abort()
