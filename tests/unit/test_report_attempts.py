"""Reports and comparisons of a re-run session: every figure is the final attempt of each
trial, the verdict is the one stored with it, earlier attempts are listed and in no figure."""
import json

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.report import build_report
from hpcbench.coordinator.report.compare import compare_runs
from hpcbench.coordinator.report.compare_page import comparison_html
from hpcbench.coordinator.report.exports import run_summary
from hpcbench.coordinator.report.rundata import load_run
from hpcbench.coordinator.session.results import ResultsWriter, read_summary
from tests.support.trial_dirs import run_trial


def recipe(trial_id: str, concurrency: int) -> dict:
    return {"trial": {"id": trial_id, "index": concurrency, "repetition": 1,
                      "params": {"concurrency": concurrency}},
            "workload": {"error_threshold": 0.01}}


def rerun_session(root, session="s"):
    """c1 passed at once; c2 failed (4 batches), then passed when measured again (2 batches);
    c3 failed, then its second attempt was cut."""
    writer = ResultsWriter(root, "scenario", session)
    run_trial(writer, "c1", batches=3, recipe=recipe("c1", 1))
    run_trial(writer, "c2", batches=4, recipe=recipe("c2", 2), problems=("executor-1 lost",))
    run_trial(writer, "c3", batches=1, recipe=recipe("c3", 3), problems=("error rate 5%",))
    run_trial(writer, "c2", batches=2, recipe=recipe("c2", 2), session_run=2)
    writer.open_trial("c3", recipe("c3", 3), session_run=2).abort("stopped: SIGTERM received")
    return writer.session_dir


def test_figures_are_the_final_attempts_and_earlier_ones_are_listed(tmp_path):
    run_dir = rerun_session(tmp_path)
    run = load_run(run_dir)
    assert [trial.trial_id for trial in run.trials] == ["c1", "c2"]
    c2 = run.trials[1]
    assert c2.passed and c2.attempt == 2
    assert c2.summary["overall"]["requests"] == 2 * 50 \
        == read_summary(run_dir / "c2")["overall"]["requests"]
    assert len(c2.requests) == 2 * 50       # only the final attempt's raw samples
    assert run.unfinished == ["c3"]
    assert run.attempt_notes() == [
        "c2: figures of attempt 2 (passed); earlier: attempt 1 failed (executor-1 lost)",
        "c3: newest attempt cut, not reported; earlier: attempt 1 failed (error rate 5%)"]

    summary = {trial["trial"]: trial for trial in run_summary(run)["trials"]}
    assert summary["c2"]["verdict"] == "passed" and summary["c2"]["attempt"] == 2
    assert summary["c2"]["earlier_attempts"] == [
        {"attempt": 1, "verdict": "failed", "problems": ["executor-1 lost"]}]
    assert summary["c2"]["overall"]["requests"] == 100

    text = build_report(run_dir).read_text()
    assert "Measured more than once" in text
    assert "c2: figures of attempt 2 (passed); earlier: attempt 1 failed (executor-1 lost)" in text
    assert json.loads((run_dir / "summary.json").read_text())["trials"][1]["attempt"] == 2


def test_a_failed_final_attempt_is_reported_failed_whatever_its_error_rate(tmp_path):
    writer = ResultsWriter(tmp_path, "scenario", "s")
    run_trial(writer, "c1", recipe=recipe("c1", 1), problems=("executor-1 lost (killed)",))
    run = load_run(writer.session_dir)
    assert not run.trials[0].passed
    text = build_report(writer.session_dir).read_text()
    assert "1 trial(s) failed" in text and "c1: executor-1 lost (killed)" in text


def test_compare_uses_final_attempts_and_lists_the_earlier_ones(tmp_path):
    run_a = load_run(rerun_session(tmp_path, "a"))
    writer = ResultsWriter(tmp_path, "scenario", "b")
    run_trial(writer, "c1", batches=3, recipe=recipe("c1", 1))
    run_trial(writer, "c2", batches=3, recipe=recipe("c2", 2))
    comparison = compare_runs(run_a, load_run(writer.session_dir))
    [c2_requests] = [d for d in comparison.differences
                     if d.point == "concurrency=2" and d.metric == "req_per_s"]
    assert len(c2_requests.a) == 1          # the final attempt only, not both
    page = comparison_html(comparison)
    assert "A: c2: figures of attempt 2 (passed); earlier: attempt 1 failed" in page


def test_an_alias_bomb_in_a_trials_recipe_is_refused_not_expanded(tmp_path):
    """A results tree may be anyone's: its recipe.yaml is read within a recipe's limits."""
    writer = ResultsWriter(tmp_path, "scenario", "s")
    trial_dir, _ = run_trial(writer, "c1", recipe=recipe("c1", 1))
    bomb = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    bomb += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 9)]
    (trial_dir / "recipe.yaml").chmod(0o600)
    (trial_dir / "recipe.yaml").write_text("\n".join(bomb) + "\n")
    with pytest.raises(HpcbenchError, match="cannot be read.*beyond the limits"):
        load_run(writer.session_dir)
