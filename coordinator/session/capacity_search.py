"""Capacity search strategy: which load to probe next, from the verdicts so far, and when to stop.

Pure and deterministic (no I/O, no clock): the session feeds it one `Observation` per finished
probe and asks `next_probe`; a resumed session replays the recorded observations and gets the
same probes, so it continues the search where it stopped.

The method (docs/capacity-search.md):
1. Bracketing: probe `low`; while the load meets the SLOs, double it (capped at `high`). The
   first load that misses closes the bracket [highest meeting, lowest missing].
2. Bisection: probe the middle of the bracket until its width is at most `resolution`.
   Latency against load is a hockey stick (flat, then steep near saturation), so interpolating
   on the measured percentile (regula falsi, secant) converges slowly from the flat side and
   can stall; bisection needs at most log2(width / resolution) probes whatever the curve.
3. Noise: when the search would stop, a bracket end (the capacity, the lowest missing load, or
   the range end that bounds the answer) whose verdict is close (the SLO limit lies inside the
   confidence interval of the measured percentile; probe_verdict.py) runs again at the same
   load, up to `max_repeats` more times, its verdict then taken from all its runs pooled. If
   that flips it, the bracket moves and the search goes on. Only the ends are repeated: a close
   verdict elsewhere is superseded (a close "meets" below a load that meets clearly) or, if it
   misled the bisection, ends up as a bracket end itself.

The capacity is the highest meeting load below the lowest missing one; its uncertainty is the
bracket (the true capacity lies between the two, within `resolution`), plus a note for each
bracketing verdict that stayed close after every repeat and for any meeting load found above a
missing one (a non-monotonic answer: noise or an unstable server).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# how a search ended (Conclusion.status)
FOUND = "found"                # bracket [capacity, lowest missing] narrower than resolution
BELOW_RANGE = "below-range"    # even `low` misses the SLOs
ABOVE_RANGE = "above-range"    # `high` still meets them: the capacity is at least `high`


@dataclass(frozen=True)
class SearchSpace:
    """Where and how finely to search: loads in [low, high], integer loads for concurrency."""

    axis: str
    low: float
    high: float
    resolution: float
    integer: bool
    max_repeats: int


@dataclass(frozen=True)
class Observation:
    """A load's verdict after `runs` runs of it (pooled): meets the SLOs or not, and whether
    that verdict is close (could flip with more samples)."""

    load: float
    meets: bool
    close: bool
    runs: int


@dataclass(frozen=True)
class Probe:
    """The next trial to run: `load`, its `run`-th run (1 for a first probe, 2.. repeats)."""

    load: float
    run: int
    reason: str


@dataclass(frozen=True)
class Conclusion:
    status: str
    capacity: float | None         # highest meeting load below the lowest missing one
    lowest_missing: float | None
    notes: tuple[str, ...]

    @property
    def uncertainty(self) -> float | None:
        """Width of the bracket holding the true capacity (None when one side is open)."""
        if self.capacity is None or self.lowest_missing is None:
            return None
        return self.lowest_missing - self.capacity


def decisions(observations: list[Observation]) -> dict[float, Observation]:
    """Each load's current verdict: its latest observation (pooled over all its runs)."""
    latest: dict[float, Observation] = {}
    for observation in observations:
        latest[observation.load] = observation
    return latest


def next_probe(space: SearchSpace, observations: list[Observation]) -> Probe | None:
    """The next load to run, or None when the search is over."""
    if not observations:
        return Probe(space.low, 1, "start of the bracketing at the lowest load")
    decided = decisions(observations)
    meeting, missing = _bracket(decided)
    if meeting is not None and missing is None and meeting < space.high:
        return Probe(_grow(space, meeting), 1, "bracketing: double the load")
    if meeting is not None and missing is not None and missing - meeting > space.resolution:
        middle = _middle(space, meeting, missing)
        if middle is not None:
            return Probe(middle, 1, "bisection of the bracket")
    # the search would stop here (found, below or above the range): first make sure of its ends
    for end in (missing, meeting):
        if end is not None and decided[end].close and decided[end].runs <= space.max_repeats:
            return Probe(end, decided[end].runs + 1,
                         "a bracket end's verdict was close: run it again, pooled")
    return None


def conclude(space: SearchSpace, observations: list[Observation]) -> Conclusion:
    """The answer the observations give (call once `next_probe` returns None; before that it
    is the answer so far)."""
    decided = decisions(observations)
    meeting, missing = _bracket(decided)
    notes = []
    for load in (meeting, missing):
        if load is not None and decided[load].close:
            notes.append(f"the verdict at {load:g} stayed close after {decided[load].runs} "
                         f"run(s): the capacity may lie one step to either side")
    if missing is not None:
        above = sorted(load for load, seen in decided.items() if seen.meets and load > missing)
        if above:
            notes.append(f"load(s) {', '.join(f'{load:g}' for load in above)} met the SLOs "
                         f"above {missing:g}, which missed them: the server's answer is not "
                         f"monotonic in load (noise, or an unstable server)")
    if meeting is None:
        status = BELOW_RANGE
    elif missing is None:
        status = ABOVE_RANGE if meeting >= space.high else FOUND
    else:
        status = FOUND
    return Conclusion(status, meeting, missing, tuple(notes))


def _bracket(decided: dict[float, Observation]) -> tuple[float | None, float | None]:
    """(highest meeting load below the lowest missing one, lowest missing load)."""
    missing = min((load for load, seen in decided.items() if not seen.meets), default=None)
    meeting = max((load for load, seen in decided.items() if seen.meets
                   and (missing is None or load < missing)), default=None)
    return meeting, missing


def _grow(space: SearchSpace, load: float) -> float:
    grown = min(max(2 * load, load + space.resolution), space.high)
    return float(math.floor(grown)) if space.integer else _tidy(grown)


def _middle(space: SearchSpace, meeting: float, missing: float) -> float | None:
    if space.integer:
        middle = float(math.floor((meeting + missing) / 2))
    else:
        middle = _tidy((meeting + missing) / 2)
    return middle if meeting < middle < missing else None


def _tidy(load: float) -> float:
    """A load as trial ids show it: six significant digits, so ids stay short and stable."""
    return float(f"{load:.6g}")
