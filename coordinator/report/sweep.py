"""Sweeps: throughput and latency against the swept parameter, and the saturation point.

The x axis is the swept parameter with the most distinct values; any other swept parameters
split the trials into series (one line each). Repetitions of a point are averaged.

Saturation point (docs/reports.md): walking a series in ascending order of the parameter, the
first point whose output-token throughput gained less than SATURATION_GAIN (5 %) over the previous
point while its p99 end-to-end latency grew by more than SATURATION_LATENCY_GROWTH (20 %). From
there on, more offered load buys latency, not throughput.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SATURATION_GAIN = 0.05
SATURATION_LATENCY_GROWTH = 0.20


@dataclass
class SweepPoint:
    value: float
    req_per_s: float
    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    e2e_p50_ms: float
    e2e_p99_ms: float


@dataclass
class SweepSeries:
    label: str                       # the other swept values ("" with one swept parameter)
    points: list[SweepPoint]
    saturation: SweepPoint | None


@dataclass
class Sweep:
    parameter: str
    series: list[SweepSeries]


def sweep(trials) -> Sweep | None:
    """The sweep of a run's trials (rundata.TrialData); None if no numeric parameter varies."""
    values: dict[str, set] = {}
    for trial in trials:
        for name, value in trial.params.items():
            values.setdefault(name, set()).add(value)
    numeric = [name for name, seen in values.items()
               if len(seen) > 1 and all(_is_number(value) for value in seen)]
    if not numeric:
        return None
    parameter = max(sorted(numeric), key=lambda name: len(values[name]))
    groups: dict[str, dict[float, list]] = {}
    for trial in trials:
        if parameter not in trial.params:
            continue
        label = ", ".join(f"{name}={value}" for name, value in sorted(trial.params.items())
                          if name != parameter)
        groups.setdefault(label, {}).setdefault(float(trial.params[parameter]), []).append(
            trial.summary["overall"])
    series = []
    for label in sorted(groups):
        points = [_point(value, overall) for value, overall in sorted(groups[label].items())]
        series.append(SweepSeries(label, points, saturation_point(points)))
    return Sweep(parameter, series)


def saturation_point(points: list[SweepPoint]) -> SweepPoint | None:
    """The first point that gained < 5 % throughput while p99 E2E grew > 20 % (module doc)."""
    for before, after in zip(points, points[1:]):
        if not (before.output_tokens_per_s > 0 and before.e2e_p99_ms > 0):
            continue
        gain = after.output_tokens_per_s / before.output_tokens_per_s - 1
        growth = after.e2e_p99_ms / before.e2e_p99_ms - 1
        if gain < SATURATION_GAIN and growth > SATURATION_LATENCY_GROWTH:
            return after
    return None


def _point(value: float, overalls: list[dict]) -> SweepPoint:
    def mean(pick) -> float:
        numbers = [pick(overall) for overall in overalls]
        numbers = [number for number in numbers if number is not None]
        return float(np.mean(numbers)) if numbers else float("nan")

    def latency(metric: str, key: str):
        return lambda overall: overall["latency"][metric][key]

    return SweepPoint(value, mean(lambda o: o["req_per_s"]),
                      mean(lambda o: o["output_tokens_per_s"]),
                      mean(latency("ttft", "p50")), mean(latency("ttft", "p99")),
                      mean(latency("e2e", "p50")), mean(latency("e2e", "p99")))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
