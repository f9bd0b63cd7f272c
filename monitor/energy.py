"""Energy of a trial from GPU telemetry: joules and output tokens per joule.

Each GPU's cumulative energy E(t) comes from NVML's energy counter
(`hpcbench_gpu_energy_joules_total`) or, on GPUs without it, from integrating
`hpcbench_gpu_power_watts` over time (trapezoids). The trial's energy is
E(end) - E(start), with E linearly interpolated between samples, summed over every GPU of every
node. Outside the sampled span E is held at its first/last value, so a trial that the telemetry
does not cover reports only the covered part (see `covered_s`).
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

ENERGY = "hpcbench_gpu_energy_joules_total"
POWER = "hpcbench_gpu_power_watts"


@dataclass(frozen=True)
class TrialEnergy:
    joules: float
    tokens_per_joule: float | None      # None when no energy was measured (joules == 0)
    per_gpu_joules: dict[tuple[str, str], float]  # (node, GPU UUID) -> joules
    methods: dict[tuple[str, str], str]            # (node, GPU UUID) -> "energy counter" | "power integration"
    covered_s: float                    # the part of the trial window the samples span (min over GPUs)


class EnergyMeter:
    """Keeps the GPU energy and power points of telemetry messages as they arrive (e.g. from
    the bus telemetry topic), so the coordinator can ask for any trial window later.
    Thread-safe: one thread may observe while another asks for a trial."""

    def __init__(self) -> None:
        self._energy: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self._power: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self._lock = threading.Lock()

    def observe(self, message: dict) -> None:
        """Take one telemetry message (proto/telemetry.py); non-GPU series are ignored."""
        with self._lock:
            for name, labels, value in message["series"]:
                if name in (ENERGY, POWER) and "gpu" in labels:
                    table = self._energy if name == ENERGY else self._power
                    table.setdefault((message["node"], labels["gpu"]), []).append(
                        (message["ts_ns"], float(value)))

    def forget_before(self, ts_ns: int) -> None:
        """Drop points older than `ts_ns` but the last one before it (still needed to
        interpolate a window that starts at `ts_ns`), so memory stays bounded over a long run."""
        with self._lock:
            for table in (self._energy, self._power):
                for points in table.values():
                    points.sort()
                    older = sum(1 for t, _ in points if t < ts_ns)
                    del points[:max(0, older - 1)]

    def trial(self, start_ns: int, end_ns: int, output_tokens: int) -> TrialEnergy | None:
        """Energy over [start_ns, end_ns] (wall clock, time.time_ns) or None when no GPU was seen."""
        if end_ns <= start_ns:
            raise ValueError(f"trial window end {end_ns} must be after start {start_ns}")
        with self._lock:
            energy = {key: list(points) for key, points in self._energy.items()}
            power = {key: list(points) for key, points in self._power.items()}
        gpus = sorted(set(energy) | set(power))
        if not gpus:
            return None
        per_gpu, methods, covered = {}, {}, []
        for key in gpus:
            if len(energy.get(key, ())) >= 2:
                times, cumulative = _sorted(energy[key])
                methods[key] = "energy counter"
            else:
                times, watts = _sorted(power.get(key, []))
                seconds = np.diff(times) / 1e9
                cumulative = np.concatenate(([0.0], np.cumsum(seconds * (watts[1:] + watts[:-1]) / 2)))
                methods[key] = "power integration"
            if len(times) < 2:
                per_gpu[key] = 0.0
                covered.append(0.0)
                continue
            at_start, at_end = np.interp([start_ns, end_ns], times, cumulative)
            per_gpu[key] = float(at_end - at_start)
            covered.append(max(0.0, (min(end_ns, times[-1]) - max(start_ns, times[0])) / 1e9))
        joules = sum(per_gpu.values())
        return TrialEnergy(joules=joules,
                           tokens_per_joule=output_tokens / joules if joules > 0 else None,
                           per_gpu_joules=per_gpu, methods=methods, covered_s=min(covered))


def trial_energy(messages: Iterable[dict], start_ns: int, end_ns: int,
                 output_tokens: int) -> TrialEnergy | None:
    """Energy over [start_ns, end_ns] from a list of telemetry messages (see EnergyMeter)."""
    meter = EnergyMeter()
    for message in messages:
        meter.observe(message)
    return meter.trial(start_ns, end_ns, output_tokens)


def _sorted(points: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    points = sorted(points)
    return (np.array([t for t, _ in points], dtype=np.float64),
            np.array([v for _, v in points], dtype=np.float64))
