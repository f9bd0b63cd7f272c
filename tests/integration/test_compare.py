"""`hpcbench compare` on two real runs, and the statistics it rests on.

Run "slow" decodes four times slower than run "faulty" (tests/support/report_runs.py), both with
two repetitions per sweep point, so the comparison must find a significant E2E regression.
"""
import re

import numpy as np
import pytest
from scipy import stats

from hpcbench.coordinator.report import compare_page
from hpcbench.coordinator.report.compare import compare_runs, t_quantile, welch_interval
from hpcbench.coordinator.report.rundata import load_run
from tests.support.report_runs import demo_run, hpcbench


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory):
    return demo_run(tmp_path_factory, "faulty"), demo_run(tmp_path_factory, "slow")


def test_compare_finds_the_slower_decoding_with_confidence_intervals(two_runs, tmp_path):
    faulty, slow = two_runs
    page = tmp_path / "comparison.html"
    done = hpcbench("compare", str(faulty), str(slow), "--html", str(page))
    assert done.returncode == 0, done.stderr
    assert "concurrency=2" in done.stdout and "concurrency=8" in done.stdout

    comparison = compare_runs(load_run(faulty), load_run(slow))
    assert not comparison.only_a and not comparison.only_b
    by_key = {(d.point, d.metric): d for d in comparison.differences}
    for point in ("concurrency=2", "concurrency=8"):
        e2e = by_key[(point, "e2e_p50")]
        assert len(e2e.a) == len(e2e.b) == 2
        low, high = e2e.interval
        assert 0 < low <= e2e.delta <= high          # B is slower, and surely so
        assert e2e.verdict == "worse"
        assert by_key[(point, "itl_p50")].verdict == "worse"
        assert by_key[(point, "error_rate")].mean_b == 0 < by_key[(point, "error_rate")].mean_a

    text = page.read_text()
    assert "worse" in text and "Welch" in text
    assert not re.search(r"(?:src|href)\s*=", text)  # nothing to load
    assert "<script" not in text


def test_compare_of_runs_without_repetitions_shows_differences_without_intervals(two_runs):
    faulty, _ = two_runs
    comparison = compare_runs(load_run(faulty), load_run(faulty))
    assert all(d.delta == 0 and d.verdict == "no significant change"
               for d in comparison.differences if d.interval is not None)
    single = compare_runs(_one_repetition(load_run(faulty)), load_run(faulty))
    assert all(d.interval is None and d.verdict == "" for d in single.differences)


def _one_repetition(run):
    run.trials = [trial for trial in run.trials if trial.repetition == 1]
    return run


def test_compare_shows_gpu_energy_where_a_run_measured_it(two_runs):
    """The demo runs have no GPU: no energy row. Given summary.json `energy` records (as a GPU
    run writes them) energy and tokens per joule are compared like any figure, and a run
    without them says "not measured"."""
    faulty, slow = two_runs
    energy_metrics = ("energy_j", "output_tokens_per_joule")
    plain = compare_runs(load_run(faulty), load_run(slow))
    assert not [d for d in plain.differences if d.metric in energy_metrics]

    run_a, run_b = load_run(faulty), load_run(slow)
    for run, per_joule in ((run_a, (2.0, 2.01)), (run_b, (1.0, 1.01))):
        for trial in run.trials:
            value = per_joule[trial.repetition - 1]
            trial.summary["energy"] = {"joules": 1000 / value, "output_tokens_per_joule": value,
                                       "source": "energy counter", "gpus": 1,
                                       "covered_s": 1.5, "window_s": 1.5}
    by_key = {(d.point, d.metric): d for d in compare_runs(run_a, run_b).differences}
    tokens_per_joule = by_key[("concurrency=2", "output_tokens_per_joule")]
    assert tokens_per_joule.a == [2.0, 2.01] and tokens_per_joule.b == [1.0, 1.01]
    assert tokens_per_joule.verdict == "worse"
    assert by_key[("concurrency=8", "energy_j")].verdict == "worse"

    only_b = compare_page.rows(compare_runs(load_run(faulty), run_b))
    (row,) = [row for row in only_b if row[:2] == ["concurrency=2", "output_tokens_per_joule"]]
    assert row[3:5] == ["not measured", "1.005"]


def test_compare_of_a_missing_run_is_a_clear_error(two_runs, tmp_path):
    done = hpcbench("compare", str(two_runs[0]), str(tmp_path / "nope"))
    assert done.returncode == 2 and "does not exist" in done.stderr
    done = hpcbench("compare", str(two_runs[0]), str(two_runs[0]), "--html",
                    str(tmp_path / "no-dir" / "x.html"))
    assert done.returncode == 2 and "--html" in done.stderr


@pytest.mark.parametrize("a, b", [
    ([10.0, 11.0, 9.5], [12.0, 12.5, 13.5, 12.2]),
    ([1.0, 2.0], [1.5, 2.5]),
    ([100.0, 104.0, 98.0, 101.0, 99.0], [90.0, 150.0, 120.0]),
])
def test_welch_interval_matches_scipy_within_the_conservative_rounding(a, b):
    low, high = welch_interval(a, b)
    result = stats.ttest_ind(b, a, equal_var=False)
    exact_low, exact_high = result.confidence_interval(0.95)
    centre = np.mean(b) - np.mean(a)
    assert (low + high) / 2 == pytest.approx(centre)
    # df rounded down to the table: never narrower than the exact interval, at most 40% wider
    assert low <= exact_low + 1e-9 and high >= exact_high - 1e-9
    assert (high - low) <= 1.4 * (exact_high - exact_low)


def test_t_quantiles_agree_with_scipy():
    for df in (1, 2, 5, 10, 30, 60, 120):
        assert t_quantile(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-3)
    assert t_quantile(1000) == pytest.approx(1.96)
