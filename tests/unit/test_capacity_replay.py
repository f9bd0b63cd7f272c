"""A session's capacity search resumed from disk: probes written through the real results
writer and aggregator, their verdicts in trial.done, replayed by a new CapacitySearch without
judging them again or touching a file; verdicts judged by other SLOs are refused."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.measure.histogram import Histogram
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.session import verdicts
from hpcbench.coordinator.session.capacity import CapacitySearch
from hpcbench.coordinator.session.results import ResultsWriter
from hpcbench.proto.samples import encode
from hpcbench.recipes import recipe_from_dict
from tests.support.sample_batches import make_batch

RECIPE = {"scenario": "cap", "workload": {"service": "simulator", "model": "sim-llama"},
          "search": {"axis": "concurrency", "low": 1, "high": 32, "resolution": 1,
                     "slo": {"itl": {"percentile": 50, "max": "65ms"}}}}


def itl_histograms(load: float) -> dict[str, Histogram]:
    """ITL samples of a server whose ITL is 10 + 10 x load ms (capacity 5 at 65 ms)."""
    histogram = Histogram()
    histogram.record_many(np.full(400, int((10 + 10 * load) * 1e6), dtype=np.int64))
    return {"itl": histogram}


def measure(writer: ResultsWriter, search: CapacitySearch, trial,
            problems: tuple[str, ...] = ()) -> None:
    """One probe measured: a trial finished through the aggregator, judged by the search."""
    aggregator = Aggregator(run_id="run-1")
    sink = writer.open_trial(trial.id, {"trial": trial.id})
    aggregator.open_trial(trial.id, sink=sink)
    aggregator.ingest(encode(make_batch(0, 50, trial=trial.id)))
    summary = aggregator.close_trial(trial.id)
    verdict = verdicts.verdict_record(list(problems), 0.01)
    verdict["probe"] = search.judge(summary.to_dict(), itl_histograms(trial.params["concurrency"]),
                                    verdict)
    sink.finish(summary, verdict)
    if not problems:
        search.record(trial, verdict["probe"])


def digest(directory) -> dict[str, str]:
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.fixture
def session(tmp_path):
    return ResultsWriter(tmp_path, "cap", "s1")


def test_a_new_search_replays_recorded_verdicts_and_asks_for_the_same_next_probe(session):
    first = CapacitySearch(recipe_from_dict(RECIPE))
    for index in range(4):                     # interrupted after 1, 2, 4, 8
        measure(session, first, first.next_trial(index))
    files = digest(session.session_dir)
    resumed = CapacitySearch(recipe_from_dict(RECIPE))
    replayed = resumed.replay(session.session_dir)
    assert [trial.id for trial in replayed] == [
        "capacity_concurrency-1", "capacity_concurrency-2", "capacity_concurrency-4",
        "capacity_concurrency-8"]
    assert resumed.observations == first.observations and resumed.path == first.path
    assert resumed.next_trial(4).id == first.next_trial(4).id == "capacity_concurrency-6"
    assert digest(session.session_dir) == files
    assert resumed.result()["status"] == "unfinished"


def test_replay_stops_at_a_probe_measured_unsoundly(session):
    first = CapacitySearch(recipe_from_dict(RECIPE))
    measure(session, first, first.next_trial(0))
    measure(session, first, first.next_trial(1), problems=("executor-1 lost (killed)",))
    resumed = CapacitySearch(recipe_from_dict(RECIPE))
    assert [trial.id for trial in resumed.replay(session.session_dir)] == [
        "capacity_concurrency-1"]
    assert resumed.next_trial(1).id == "capacity_concurrency-2"     # measured again


def test_a_probe_with_measurement_problems_stops_the_search_with_e004(session):
    search = CapacitySearch(recipe_from_dict(RECIPE))
    trial = search.next_trial(0)
    probe = search.judge({"overall": {"requests": 50, "error_total": 0}}, itl_histograms(1),
                         {"problems": ["2 batch(es) lost in transit"]})
    assert probe["measurement_problems"] == ["2 batch(es) lost in transit"]
    with pytest.raises(HpcbenchError) as raised:
        search.record(trial, probe)
    assert raised.value.code == "E004" and "--session" in raised.value.render()


def test_an_error_rate_over_the_ceiling_is_a_verdict_not_a_measurement_problem():
    search = CapacitySearch(recipe_from_dict(RECIPE))
    search.next_trial(0)
    overall = {"requests": 100, "error_total": 50}
    problems = verdicts.threshold_problems(overall, 0.01)
    probe = search.judge({"overall": overall}, itl_histograms(1), {"problems": problems})
    assert probe["measurement_problems"] == [] and not probe["meets"]


def test_verdicts_judged_by_other_slos_are_refused_not_mixed(session):
    first = CapacitySearch(recipe_from_dict(RECIPE))
    measure(session, first, first.next_trial(0))
    changed = {**RECIPE, "search": {**RECIPE["search"],
                                    "slo": {"itl": {"percentile": 90, "max": "65ms"}}}}
    with pytest.raises(HpcbenchError) as raised:
        CapacitySearch(recipe_from_dict(changed)).replay(session.session_dir)
    assert raised.value.code == "E006"
    assert "search.slo" in raised.value.message and "new --session" in raised.value.render()
