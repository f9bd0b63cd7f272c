"""A capacity search on real processes (coordinator, executor, monitor, simulator): it finds the
capacity the simulator's timing model predicts, survives a stop, and a re-run of the session
continues from the recorded probe verdicts without measuring or rewriting them.

The simulator decodes a step in decode_base_ms + decode_ms_per_seq x running sequences, and
in closed loop at concurrency C all C sequences run (docs/simulator.md), so the median ITL is
base + per_seq x C. The highest C whose median ITL is within a limit L is therefore
floor((L - base) / per_seq); L sits half a step between two concurrencies, so scheduling noise
of a few ms cannot flip a verdict.
"""
from __future__ import annotations

import json
import math
import signal

import pytest
import yaml

from tests.support.fault_runs import digest, started_runs
from tests.support.waiting import wait_until

DECODE_BASE_MS, DECODE_PER_SEQ_MS = 10.0, 10.0
LIMIT_MS = 65.0


def expected_capacity(limit_ms: float) -> int:
    """The simulator's highest concurrency with median ITL within `limit_ms`."""
    return math.floor((limit_ms - DECODE_BASE_MS) / DECODE_PER_SEQ_MS)


def write_search_recipe(tmp_path, **search) -> object:
    data = {
        "scenario": "capacity", "runtime": "process", "orchestration": {"mode": "local"},
        "workload": {
            "service": "simulator", "model": "sim-llama", "duration": "1.5s",
            "warmup": "0.3s", "request_timeout": "10s", "load": {"pattern": "closed"},
            "dataset": {"input_tokens": {"distribution": "fixed", "mean": 16},
                        "output_tokens": {"distribution": "fixed", "mean": 16}},
        },
        "servers": {"service_config": {"decode_base_ms": DECODE_BASE_MS,
                                       "decode_ms_per_seq": DECODE_PER_SEQ_MS}},
        "search": {"axis": "concurrency", "low": 2, "high": 16, "resolution": 1,
                   "slo": {"itl": {"percentile": 50, "max": f"{LIMIT_MS:g}ms"}},
                   "max_error_rate": 0.01, **search},
        "monitoring": {"interval": "500ms"},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def recorded_probes(session_dir) -> list[dict]:
    try:
        return json.loads((session_dir / "session.json").read_text())["search"]["probes"]
    except (OSError, ValueError, KeyError):
        return []


@pytest.fixture
def runs():
    with started_runs() as start:
        yield start


def test_the_search_finds_the_modelled_capacity_and_a_rerun_continues_it(tmp_path, runs):
    recipe = write_search_recipe(tmp_path)
    results = tmp_path / "results"
    session_dir = results / "capacity" / "search"

    # run 1: stopped (as by Ctrl-C) once two probes have recorded verdicts
    first = runs(recipe, results, "search")
    wait_until(lambda: len(recorded_probes(session_dir)) >= 2 or first.process.poll() is not None,
               timeout=120, what="two recorded probes")
    first.process.send_signal(signal.SIGINT)
    assert first.wait(120) == 130, first.output
    recorded = recorded_probes(session_dir)
    assert [probe["load"] for probe in recorded[:2]] == [2, 4]      # bracketing from low
    kept = {probe["trial_id"]: digest(session_dir / probe["trial_id"]) for probe in recorded}
    stopped = json.loads((session_dir / "session.json").read_text())
    assert stopped["search"]["status"] == "unfinished"

    # run 2, same session: the recorded verdicts are replayed, never measured or judged again
    second = runs(recipe, results, "search")
    assert second.wait(180) == 0, second.output
    session = json.loads((session_dir / "session.json").read_text())
    search = session["search"]
    capacity = expected_capacity(LIMIT_MS)
    assert (search["status"], search["capacity"], search["lowest_missing"]) == (
        "found", capacity, capacity + 1), search
    assert search["capacity"] <= capacity < search["capacity"] + search["resolution"]
    assert [probe["load"] for probe in search["probes"]] == [2, 4, 8, 6, 5]
    assert [probe["meets"] for probe in search["probes"]] == [True, True, False, False, True]
    for trial_id, files in kept.items():
        assert digest(session_dir / trial_id) == files, trial_id      # not one byte rewritten
    assert session["runs"][1]["trials_skipped"] == list(kept)
    for probe in search["probes"]:          # each probe a trial with its own results
        done = json.loads((session_dir / probe["trial_id"] / "trial.done").read_text())
        assert done["probe"]["load"] == probe["load"] and done["probe"]["meets"] == probe["meets"]
        itl = done["probe"]["checks"][0]
        expected_ms = DECODE_BASE_MS + DECODE_PER_SEQ_MS * probe["load"]
        assert itl["value_ms"] == pytest.approx(expected_ms, abs=DECODE_PER_SEQ_MS / 2)
    assert f"capacity: concurrency {capacity} (requests in flight)" in second.output
    report = (session_dir / "report.html").read_text()
    assert "Capacity search" in report and f"capacity: concurrency {capacity}" in report

    # run 3: the search is over; nothing is measured and no file changes
    before = digest(session_dir)
    third = runs(recipe, results, "search")
    assert third.wait(120) == 0, third.output
    assert f"capacity: concurrency {capacity}" in third.output
    changed = {name for name, value in digest(session_dir).items() if before.get(name) != value}
    assert changed <= {"coordinator.json", "control.token"}, changed
