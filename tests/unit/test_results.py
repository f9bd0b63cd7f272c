"""Results writer: trial layout, lossless raw samples, atomic writes, resume by skipping."""
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
    finished_trials,
    read_samples,
    read_summary,
)
from hpcbench.proto.samples import encode
from tests.support.sample_batches import make_batch

RUN = "run-1"


def run_trial(writer: ResultsWriter, trial_id: str, batches: int = 4, recipe=None):
    """Aggregate `batches` batches into a trial and finish it; returns (trial dir, payloads)."""
    aggregator = Aggregator(run_id=RUN)
    trial = writer.open_trial(trial_id, recipe or {"trial": trial_id, "workload": {"rate": 5}})
    aggregator.open_trial(trial_id, slos_s={"ttft": 1.0}, sink=trial)
    payloads = [encode(make_batch(seq, 50, trial=trial_id)) for seq in range(batches)]
    for number, payload in enumerate(payloads):
        aggregator.ingest(payload)
        if number % 2:
            aggregator.snapshot()
    aggregator.ingest(payloads[0])  # a duplicate: counted, not stored twice
    return trial.finish(aggregator.close_trial(trial_id)), payloads


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
    assert set(summary["histograms"]) == {"ttft", "itl", "tpot", "e2e", "dispatch_lag",
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


def test_finished_trials_are_skipped_and_never_rewritten(tmp_path):
    writer = ResultsWriter(tmp_path, "scenario", "session")
    trial_dir, _ = run_trial(writer, "t1")
    before = {path.name: path.read_bytes() for path in trial_dir.iterdir() if path.is_file()}

    # a re-run of the session resumes: t1 is finished, t2 was interrupted mid-trial
    interrupted = writer.open_trial("t2", {"trial": "t2"})
    interrupted.append_batch(encode(make_batch(0, 5, trial="t2")))
    (interrupted.logs_dir / "executor.log").write_text("from the interrupted attempt\n")
    interrupted.abort()
    assert finished_trials(writer.session_dir) == {"t1"} == writer.finished_trials()

    with pytest.raises(TrialFinishedError, match="never rewritten"):
        writer.open_trial("t1", {"trial": "t1"})
    assert {path.name: path.read_bytes() for path in trial_dir.iterdir() if path.is_file()} \
        == before

    resumed_dir, payloads = run_trial(writer, "t2", batches=2)  # starts t2 afresh
    assert (resumed_dir / "samples.msgpack").read_bytes() == b"".join(payloads)
    assert list((resumed_dir / "logs").iterdir()) == []
    assert finished_trials(writer.session_dir) == {"t1", "t2"}
    assert finished_trials(tmp_path / "no-such-session") == set()


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
