"""How a capacity search reads in the CLI and report.html: the answer for every way a search
ends, each check with its interval (an open side shown as ∞), the section and its plot."""
from __future__ import annotations

from hpcbench.coordinator.report.capacity import answer, check_text, probe_rows, section

CHECK = {"metric": "ttft", "percentile": 99, "limit_ms": 500.0, "samples": 20,
         "value_ms": 7.5, "interval_ms": [7.1, None], "meets": True, "close": True}
PROBE = {"trial_id": "capacity_load.rate-4", "axis": "load.rate", "load": 4.0, "run": 1,
         "reason": "start of the bracketing at the lowest load", "meets": True, "close": True,
         "requests": 20, "errors": 0, "error_rate": 0.0, "max_error_rate": 0.01,
         "errors_ok": True, "checks": [CHECK], "measurement_problems": []}


def search(**changes) -> dict:
    return {"axis": "load.rate", "low": 4.0, "high": 64.0, "resolution": 2.0,
            "slo": {"ttft": {"percentile": 99, "max": 0.5}}, "max_error_rate": 0.01,
            "confidence": 0.95, "max_repeats": 2, "finished": True, "status": "found",
            "capacity": 20.0, "lowest_missing": 22.0, "uncertainty": 2.0, "notes": [],
            "probes": [PROBE], **changes}


def test_the_answer_says_how_the_search_ended():
    assert answer(search()) == ("capacity: load.rate 20 (requests/s), between 20 (meets the "
                                "SLOs) and 22 (misses them), ± 2 at resolution 2")
    assert "even load.rate 4 (requests/s) misses the SLOs; lower search.low" in answer(
        search(status="below-range", capacity=None, lowest_missing=4.0))
    assert "capacity at least load.rate 64" in answer(
        search(status="above-range", capacity=64.0, lowest_missing=None))
    unfinished = answer(search(status="unfinished", finished=False, lowest_missing=None))
    assert "re-run with the same --session" in unfinished and "so far load.rate 20" in unfinished


def test_a_check_shows_its_interval_and_an_open_side_as_infinity():
    assert check_text(CHECK) == "ttft p99 7.5 ms [7.1, ∞] ≤ 500 ms (close)"
    missing = {**CHECK, "value_ms": 600.0, "interval_ms": [550.0, 650.0], "meets": False,
               "close": False}
    assert check_text(missing) == "ttft p99 600 ms [550, 650] > 500 ms"
    assert check_text({**CHECK, "value_ms": None}) == "ttft p99: no samples"
    row = probe_rows(search(probes=[{**PROBE, "error_rate": 0.2, "errors_ok": False}]))[0]
    assert row[5] == "20.00% (over ceiling)" and row[6] == "meets (close)"


def test_the_report_section_appears_only_for_a_search():
    assert section({"state": "COMPLETED"}) == "" and section(None) == ""
    html = section({"search": search(notes=["the verdict at 22 stayed close after 3 run(s)"])})
    assert "<h2 id=\"capacity-search\">Capacity search</h2>" in html
    assert "capacity: load.rate 20" in html and "data:image/png;base64," in html
    assert "stayed close after 3 run(s)" in html and "capacity_load.rate-4" in html
