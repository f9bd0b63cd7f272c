"""Sweeps in the report: the swept parameter, series, repetitions and the saturation point."""
from hpcbench.coordinator.report import plots
from hpcbench.coordinator.report.rundata import TrialData
from hpcbench.coordinator.report.sweep import SweepPoint, saturation_point, sweep


def point(value, tokens_per_s, e2e_p99):
    return SweepPoint(value, 0, tokens_per_s, 0, 0, 0, e2e_p99)


def test_saturation_is_where_throughput_stalls_while_latency_climbs():
    points = [point(1, 100, 50), point(4, 380, 60), point(16, 390, 200), point(64, 395, 800)]
    assert saturation_point(points).value == 16
    # latency grows but throughput still gains more than 5 %: not saturated
    assert saturation_point([point(1, 100, 50), point(4, 200, 100)]) is None
    # throughput flat but latency steady (e.g. a rate limit): not saturation by this rule
    assert saturation_point([point(1, 100, 50), point(4, 101, 52)]) is None


def trial(params: dict, tokens_per_s: float, e2e_p99: float, repetition: int = 1):
    latency = {metric: {"p50": e2e_p99 / 2, "p99": e2e_p99} for metric in ("ttft", "e2e")}
    summary = {"overall": {"req_per_s": tokens_per_s / 10, "output_tokens_per_s": tokens_per_s,
                           "latency": latency}}
    recipe = {"trial": {"params": params, "repetition": repetition}}
    return TrialData("t", None, recipe, summary)


def test_a_two_parameter_sweep_gives_one_series_per_other_value_and_averages_repetitions():
    trials = [trial({"concurrency": c, "prompt_len": p}, tokens, latency, repetition)
              for p, shape in ((128, [(100, 50), (380, 60), (390, 200)]),
                               (512, [(50, 80), (150, 90), (290, 100)]))
              for repetition in (1, 2)
              for c, (tokens, latency) in zip((1, 4, 16), shape)]
    trials[0].summary["overall"]["output_tokens_per_s"] = 120   # repetitions differ: averaged
    result = sweep(trials)
    assert result.parameter == "concurrency"
    assert [series.label for series in result.series] == ["prompt_len=128", "prompt_len=512"]
    first, second = result.series
    assert [p.value for p in first.points] == [1, 4, 16]
    assert first.points[0].output_tokens_per_s == 110
    assert first.saturation.value == 16 and second.saturation is None
    png = plots.sweep_plot(result)
    assert png.startswith(b"\x89PNG")


def test_no_sweep_without_a_varying_numeric_parameter():
    assert sweep([trial({}, 100, 50), trial({}, 100, 50, repetition=2)]) is None
    assert sweep([trial({"concurrency": 4}, 100, 50)]) is None
