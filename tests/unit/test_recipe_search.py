"""The recipe's `search` block: its defaults, and each mistake refused as E006 naming the field,
the value found and the fix."""
from __future__ import annotations

import copy

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.recipes import describe_trials, recipe_from_dict, validate

SEARCH = {
    "scenario": "cap",
    "workload": {"service": "simulator", "model": "sim-llama", "error_threshold": 0.05},
    "search": {"axis": "concurrency", "low": 1, "high": 32, "resolution": 1,
               "slo": {"itl": {"percentile": 50, "max": "65ms"}}},
}
RATE = {**SEARCH, "search": {**SEARCH["search"], "axis": "load.rate", "low": 0.5,
                             "resolution": 0.25}}


def edited(base: dict, path: str, value: object) -> dict:
    data = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return data


def problems(data: dict) -> list[str]:
    return [str(problem) for problem in validate(data)]


def test_defaults_fill_the_ceiling_confidence_and_repeats_and_durations_become_seconds():
    search = recipe_from_dict(SEARCH).data["search"]
    assert search["max_error_rate"] == 0.05          # the workload's error_threshold
    assert (search["confidence"], search["max_repeats"]) == (0.95, 2)
    assert search["slo"]["itl"] == {"percentile": 50, "max": 0.065}
    without = {key: value for key, value in SEARCH.items() if key != "search"}
    assert "search" not in recipe_from_dict(without).data    # a fixed sweep
    assert describe_trials(recipe_from_dict(RATE)) == ("capacity search on load.rate from 0.5 "
                                                       "to 32, a trial per probe")
    resolved = recipe_from_dict(RATE).data
    assert resolved["workload"]["load"]["pattern"] == "poisson"   # what load.rate drives
    assert recipe_from_dict(SEARCH).data["workload"]["load"]["pattern"] == "closed"
    assert validate(resolved) == []                   # runs store it; it loads again as is
    # a rate pattern without a rate of its own: the search gives each probe its rate
    assert problems(edited(RATE, "workload.load", {"pattern": "constant"})) == []


@pytest.mark.parametrize("base,path,value,shown", [
    (SEARCH, "search.axis", "rate", "search.axis: got 'rate'; expected one of load.rate, "
                                    "concurrency (did you mean \"load.rate\"?)"),
    (SEARCH, "search.low", 0, "search.low: got 0; expected a load above 0"),
    (SEARCH, "search.high", 1, "search.high: got 1; expected a load above search.low (1)"),
    (SEARCH, "search.resolution", 40, "search.resolution: got 40; expected a step below "
                                      "high - low (31)"),
    (SEARCH, "search.low", 1.5, "search.low: got 1.5; expected a whole number: concurrency"),
    (SEARCH, "search.resolution", 0.5, "search.resolution: got 0.5; expected a whole number"),
    (SEARCH, "search.high", 200000, "search.high: got 200000; expected at most 100,000"),
    (SEARCH, "search.slo", {}, "search.slo: got {}; expected at least one of ttft, itl"),
    (RATE, "search.low", 0.0001, "search.low: got 0.0001; expected at least 0.001 requests/s"),
    (SEARCH, "search.slo.p99", {"percentile": 99, "max": 1},
     "search.slo.p99: got {'percentile': 99, 'max': 1}; expected no key 'p99' here; allowed "
     "keys: e2e, itl, tpot, ttft"),
    (SEARCH, "search.slo.ttft", {"percentile": 100, "max": "1s"},
     "search.slo.ttft.percentile: got 100; expected a percentile above 0 and at most 99.99"),
    (SEARCH, "search.slo.ttft", {"percentile": 99},
     "search.slo.ttft.max: got nothing (key is missing); expected this required key: the most"),
    (SEARCH, "search.slo.ttft", {"percentile": 99, "max": "fast"},
     "search.slo.ttft.max: got 'fast'; expected a duration"),
    (SEARCH, "search.max_error_rate", 2, "search.max_error_rate: got 2; expected a fraction"),
    (SEARCH, "search.confidence", 0.2, "search.confidence: got 0.2; expected a confidence "
                                       "level from 0.5 to 0.999"),
    (SEARCH, "search.max_repeats", 11, "search.max_repeats: got 11; expected an integer from 0"),
    (SEARCH, "search.steps", 3, "search.steps: got 3; expected no key 'steps' here; allowed "
                                "keys: axis, confidence, high, low, max_error_rate"),
    (SEARCH, "workload.load", {"pattern": "poisson", "rate": 2},
     "workload.load.pattern: got 'poisson'; expected closed: search.axis concurrency drives "
     "closed-loop concurrency"),
    (RATE, "workload.load", {"pattern": "closed"},
     "workload.load.pattern: got 'closed'; expected constant or poisson or gamma: search.axis "
     "load.rate drives an open-loop rate"),
    (SEARCH, "workload.concurrency", [1, 2], "workload.concurrency: got [1, 2]; expected a "
                                             "single value: a capacity search varies"),
    (SEARCH, "repetitions", 3, "repetitions: got 3; expected 1 with a capacity search"),
])
def test_each_mistake_is_named_with_its_value_and_fix(base, path, value, shown):
    data = edited(base, path, value)
    found = problems(data)
    assert any(line.startswith(shown) for line in found), found
    with pytest.raises(HpcbenchError) as raised:
        recipe_from_dict(data)
    assert raised.value.code == "E006"


def test_missing_required_keys_are_each_named():
    found = problems(edited(SEARCH, "search", {"axis": "concurrency"}))
    for key in ("low", "high", "resolution"):
        assert any(line.startswith(f"search.{key}: got nothing (key is missing)")
                   for line in found), found


def test_an_error_ceiling_alone_is_a_search_on_errors_only():
    data = edited(edited(SEARCH, "search.slo", {}), "search.max_error_rate", 0.02)
    assert problems(data) == []
