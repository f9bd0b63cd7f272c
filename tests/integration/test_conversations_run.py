"""`hpcbench run` of the multi-turn example (shortened) end to end: simulator, executors,
monitor and coordinator as real processes. The conversation metrics in summary.json agree
with the raw samples, and the run's exports and report show them."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import yaml

from hpcbench.coordinator.session.results import read_samples
from hpcbench.proto.samples import ErrorClass, Phase
from tests.support.report_runs import hpcbench

EXAMPLE = Path(__file__).resolve().parents[2] / "recipes" / "examples" / "multi-turn.yaml"


def test_the_multi_turn_example_runs_and_reports_its_conversations(tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["workload"].update(duration="2.5s", warmup="0.5s")
    data["workload"]["load"]["rate"] = 6
    data["workload"]["conversation"]["think_time"] = {"distribution": "uniform",
                                                      "min": "50ms", "max": "150ms"}
    data["monitoring"]["interval"] = "500ms"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    done = hpcbench("run", str(recipe), "--results-dir", str(tmp_path / "results"),
                    "--session", "talks", "--no-live", "--executors", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = tmp_path / "results" / "multi-turn" / "talks"
    [trial_dir] = [path for path in run_dir.iterdir() if (path / "trial.done").exists()]
    summary = json.loads((trial_dir / "summary.json").read_text())
    talks = summary["conversations"]

    # recount from the raw samples: conversations of each executor, their turns in order
    turns = defaultdict(list)
    for batch in read_samples(trial_dir / "samples.msgpack"):
        cols = batch.columns
        for row in range(batch.n):
            turns[(batch.executor, int(cols["conversation"][row]))].append(
                (int(cols["turn"][row]), int(cols["turns"][row]), int(cols["phase"][row]),
                 int(cols["error"][row])))
    assert {executor for executor, _ in turns} == {"executor-0", "executor-1"}
    counted = [sorted(rows) for rows in turns.values() if min(rows)[2] == Phase.MEASURED
               and min(rows)[0] == 0]
    completed = [rows for rows in counted if len(rows) == rows[0][1]
                 and all(error == ErrorClass.OK for *_, error in rows)]
    assert talks["started"] == len(counted) >= 8
    assert talks["completed"] == len(completed) >= 3
    assert talks["started"] == talks["completed"] + talks["failed"] + talks["cut"]
    for rows in turns.values():
        assert [turn for turn, *_ in sorted(rows)] == list(range(len(rows)))
    by_turn = {entry["turn"]: entry for entry in talks["turns"]}
    # each turn resends the history: 64 words per question, 32 per answer (server counts)
    assert by_turn[1]["input_tokens_mean"] == 64
    assert by_turn[2]["input_tokens_mean"] == 64 * 2 + 32
    assert by_turn[3]["input_tokens_mean"] == 64 * 3 + 32 * 2
    assert by_turn[1]["ttft"]["count"] == by_turn[1]["ok"] > 0

    # exports and report
    with open(run_dir / "conversations.csv") as table:
        csv_rows = list(csv.DictReader(table))
    assert [int(row["turn"]) for row in csv_rows] == sorted(by_turn)
    assert float(csv_rows[1]["input_tokens_mean"]) == 64 * 2 + 32
    run_summary = json.loads((run_dir / "summary.json").read_text())
    assert run_summary["trials"][0]["conversations"]["started"] == talks["started"]
    with open(run_dir / "summary.csv") as table:
        [trial_row] = list(csv.DictReader(table))
    assert int(trial_row["conversations_completed"]) == talks["completed"]
    report = (run_dir / "report.html").read_text()
    assert "<h2 id=\"conversations\">Conversations</h2>" in report
    assert "TTFT by turn index" in report
    exported = hpcbench("report", str(run_dir), "--export", "csv")
    assert exported.returncode == 0, exported.stdout + exported.stderr
    with open(run_dir / "requests.csv") as table:
        requests = list(csv.DictReader(table))
    assert {row["turn"] for row in requests} >= {"0", "1", "2"}
