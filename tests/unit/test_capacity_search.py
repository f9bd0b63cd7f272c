"""The capacity search strategy alone: probes chosen from verdicts, stop rule, answer, notes.

A synthetic server whose true capacity is known answers each probe; the strategy must land
within the resolution in at most the probes bracketing and bisection need, whatever the
capacity, and handle close verdicts, ranges that miss the capacity and non-monotonic answers.
"""
from __future__ import annotations

import math

import pytest

from hpcbench.coordinator.session.capacity_search import (
    ABOVE_RANGE,
    BELOW_RANGE,
    FOUND,
    Observation,
    SearchSpace,
    conclude,
    next_probe,
)


def space(low=1.0, high=64.0, resolution=1.0, integer=True, max_repeats=2) -> SearchSpace:
    return SearchSpace("concurrency" if integer else "load.rate", low, high, resolution,
                       integer, max_repeats)


def search(space: SearchSpace, verdict) -> list[Observation]:
    """Run the strategy to its end; `verdict(load, run)` -> (meets, close)."""
    observations: list[Observation] = []
    while (probe := next_probe(space, observations)) is not None:
        meets, close = verdict(probe.load, probe.run)
        observations.append(Observation(probe.load, meets, close, probe.run))
        assert len(observations) < 100, "the search does not end"
    return observations


def probe_bound(space: SearchSpace) -> int:
    """Bracketing doublings from low to high, plus bisections of the widest bracket."""
    doublings = math.ceil(math.log2(space.high / space.low)) + 1
    return doublings + math.ceil(math.log2((space.high - space.low) / space.resolution))


@pytest.mark.parametrize("capacity", [1, 2, 3, 5, 7, 8, 13, 31, 32, 33, 50, 63])
def test_an_integer_capacity_is_found_exactly_within_the_probe_bound(capacity):
    grid = space()
    observations = search(grid, lambda load, run: (load <= capacity, False))
    answer = conclude(grid, observations)
    assert (answer.status, answer.capacity, answer.lowest_missing) == (FOUND, capacity,
                                                                      capacity + 1)
    assert answer.uncertainty == 1 and answer.notes == ()
    assert len(observations) <= probe_bound(grid)
    assert len({o.load for o in observations}) == len(observations)   # no load twice


@pytest.mark.parametrize("capacity", [0.7, 3.14159, 9.99, 17.5, 40.2])
def test_a_rate_capacity_lands_within_the_resolution(capacity):
    grid = space(low=0.5, high=50.0, resolution=0.25, integer=False)
    observations = search(grid, lambda load, run: (load <= capacity, False))
    answer = conclude(grid, observations)
    assert answer.status == FOUND
    assert answer.capacity <= capacity < answer.lowest_missing
    assert answer.lowest_missing - answer.capacity <= grid.resolution
    assert len(observations) <= probe_bound(grid)


def test_bracketing_doubles_from_low_then_bisection_halves():
    grid = space()
    loads = [o.load for o in search(grid, lambda load, run: (load <= 5, False))]
    assert loads == [1, 2, 4, 8, 6, 5]


def test_the_range_bounds_the_answer_on_both_sides():
    grid = space(low=4.0, high=20.0)
    below = search(grid, lambda load, run: (False, False))
    assert [o.load for o in below] == [4]
    assert conclude(grid, below).status == BELOW_RANGE
    assert conclude(grid, below).capacity is None
    above = search(grid, lambda load, run: (True, False))
    assert [o.load for o in above] == [4, 8, 16, 20]     # the last doubling is capped at high
    answer = conclude(grid, above)
    assert (answer.status, answer.capacity, answer.uncertainty) == (ABOVE_RANGE, 20, None)


def test_a_close_verdict_runs_again_up_to_max_repeats_and_then_stands():
    grid = space(max_repeats=2)
    runs = []

    def verdict(load, run):
        runs.append((load, run))
        return load <= 5, load == 6        # 6 stays close however often it runs

    observations = search(grid, verdict)
    assert [(load, run) for load, run in runs if load == 6] == [(6, 1), (6, 2), (6, 3)]
    answer = conclude(grid, observations)
    assert (answer.capacity, answer.lowest_missing) == (5, 6)
    assert any("6 stayed close after 3 run(s)" in note for note in answer.notes)


def test_a_pooled_verdict_that_flips_on_a_repeat_steers_the_search():
    grid = space()
    # 4 first looks like a (close) miss; once it is a bracket end it runs again, and pooled
    # with its repeat it meets: the bracket moves up and the search goes on
    observations = search(grid, lambda load, run: ((load <= 5, False) if load != 4 else
                                                   (run > 1, run == 1)))
    assert [(o.load, o.runs) for o in observations] == [
        (1, 1), (2, 1), (4, 1), (3, 1), (4, 2), (8, 1), (6, 1), (5, 1)]
    assert conclude(grid, observations).capacity == 5


def test_a_close_verdict_that_is_no_bracket_end_is_not_repeated():
    grid = space()
    # the low loads' percentiles have too few samples to be sure of (close), but higher loads
    # meet clearly: nothing to repeat
    observations = search(grid, lambda load, run: (load <= 5, load <= 2))
    assert [o.load for o in observations] == [1, 2, 4, 8, 6, 5]
    assert conclude(grid, observations).notes == ()


def test_range_ends_that_are_close_run_again_before_the_search_gives_up():
    grid = space(low=4.0, high=20.0, max_repeats=1)
    below = search(grid, lambda load, run: (False, True))
    assert [(o.load, o.runs) for o in below] == [(4, 1), (4, 2)]
    above = search(grid, lambda load, run: (True, load == 20))
    assert [(o.load, o.runs) for o in above] == [(4, 1), (8, 1), (16, 1), (20, 1), (20, 2)]


def test_a_meeting_load_above_a_missing_one_is_reported_not_hidden():
    grid = space()
    observations = [Observation(1, True, False, 1), Observation(2, True, False, 1),
                    Observation(4, False, False, 1), Observation(3, True, False, 1),
                    Observation(8, True, False, 1)]
    answer = conclude(grid, observations)
    assert (answer.capacity, answer.lowest_missing) == (3, 4)
    assert any("8 met the SLOs above 4" in note for note in answer.notes)


def test_the_search_is_a_function_of_its_observations():
    """A resumed session replays the recorded verdicts and must be asked for the same probe."""
    grid = space(low=2.0, high=100.0, resolution=3.0)
    observations = search(grid, lambda load, run: (load <= 41, False))
    for cut in range(len(observations)):
        assert next_probe(grid, observations[:cut]).load == observations[cut].load
