"""Open-loop schedules (executor/schedules.py): exact spacing, Poisson by KS test, gamma
burstiness, bursts, ramp-up, trace replay and the split of load between executors."""
import json

import numpy as np
import pytest
from scipy import stats

from hpcbench.common.errors import HpcbenchError
from hpcbench.executor.config import LoadSpec
from hpcbench.executor.schedules import arrival_offsets, closed_loop_starts, load_trace


def offsets(spec, horizon, **kwargs):
    return np.concatenate(list(arrival_offsets(spec, horizon, **kwargs)))


def test_constant_rate_is_exact_and_never_drifts():
    times = offsets(LoadSpec(pattern="constant", rate=1000.0), horizon=30.0, block=1000)
    assert len(times) == 30_000
    # offset k is k / rate itself, not an accumulated sum: no drift after 30 000 requests
    np.testing.assert_allclose(times, np.arange(30_000) / 1000.0, rtol=0, atol=1e-9)


def test_constant_executors_interleave_evenly():
    def spec(index):
        return LoadSpec(pattern="constant", rate=10.0, phase_offset=index / 2 / 10.0)
    merged = np.sort(np.concatenate([offsets(spec(i), 1.0) for i in range(2)]))
    np.testing.assert_allclose(np.diff(merged), 0.05)


def test_poisson_inter_arrivals_pass_a_ks_test():
    times = offsets(LoadSpec(pattern="poisson", rate=200.0), horizon=60.0, seed=7)
    gaps = np.diff(times)
    result = stats.kstest(gaps, "expon", args=(0, 1 / 200.0))
    assert result.pvalue > 0.01
    assert len(times) == pytest.approx(12_000, rel=0.05)


def test_poisson_is_seeded_and_executors_differ():
    spec = LoadSpec(pattern="poisson", rate=50.0)
    a = offsets(spec, 5.0, seed=1)
    np.testing.assert_array_equal(a, offsets(spec, 5.0, seed=1))
    other = offsets(spec, 5.0, seed=1, executor_index=1, executor_count=2)
    assert not np.array_equal(a[:10], other[:10])


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_burstiness_sets_the_variability_at_the_same_rate(burstiness):
    times = offsets(LoadSpec(pattern="gamma", rate=100.0, burstiness=burstiness), 100.0)
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(0.01, rel=0.05)
    # coefficient of variation of gamma(shape k) is 1/sqrt(k)
    assert gaps.std() / gaps.mean() == pytest.approx(1 / np.sqrt(burstiness), rel=0.1)


def test_burst_then_pause():
    times = offsets(LoadSpec(pattern="burst", burst_size=5, burst_pause=2.0), 7.0)
    np.testing.assert_array_equal(times, np.repeat([0.0, 2.0, 4.0, 6.0], 5))


def test_ramp_up_grows_the_rate_linearly_then_holds_it():
    times = offsets(LoadSpec(pattern="constant", rate=100.0, ramp_up=10.0), 20.0)
    in_ramp = np.histogram(times, bins=[0, 5, 10])[0]
    # rate r*t/R: a quarter of the ramp's 500 requests come in its first half
    assert in_ramp[0] == pytest.approx(125, abs=2) and in_ramp[1] == pytest.approx(375, abs=2)
    assert np.sum((times >= 10) & (times < 20)) == pytest.approx(1000, abs=2)
    assert np.all(np.diff(times) >= 0)


def test_trace_replay_is_relative_sorted_and_split_between_executors(tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(json.dumps(entry) for entry in [
        {"timestamp": 10.5}, {"timestamp": 10.0}, {"timestamp_ms": 11_000}, 12.0]) + "\n\n")
    np.testing.assert_allclose(load_trace(str(trace)), [0.0, 0.5, 1.0, 2.0])
    spec = LoadSpec(pattern="trace", trace=str(trace))
    np.testing.assert_allclose(offsets(spec, None, executor_index=0, executor_count=2), [0, 1])
    np.testing.assert_allclose(offsets(spec, None, executor_index=1, executor_count=2),
                               [0.5, 2.0])
    np.testing.assert_allclose(offsets(spec, 1.0), [0.0, 0.5])


@pytest.mark.parametrize("content, message", [
    ('{"timestamp": "soon"}\n', "line 1"),
    ('{"when": 1}\n', "line 1"),
    ("\n", "no requests"),
])
def test_bad_traces_name_the_line_and_the_fix(tmp_path, content, message):
    trace = tmp_path / "trace.jsonl"
    trace.write_text(content)
    with pytest.raises(HpcbenchError, match=message) as caught:
        load_trace(str(trace))
    assert caught.value.code == "E006"


def test_missing_trace_file_is_a_config_error(tmp_path):
    with pytest.raises(HpcbenchError, match="cannot be read"):
        load_trace(str(tmp_path / "absent.jsonl"))


def test_closed_loop_slots_start_staggered_over_the_ramp():
    np.testing.assert_allclose(closed_loop_starts(4, 2.0), [0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(closed_loop_starts(3, 0.0), [0, 0, 0])
