"""`hpcbench run` of recipes/examples/prefix-reasoning-sim.yaml (shortened), with the
simulator's prefix cache on and off, then `hpcbench compare` of the two runs: the shared
prefixes hit the cache (the server's own counters), the cached run's TTFT is lower as the
simulator's timing model says, and reasoning tokens are split in summary, exports and report.

Timing model of the example: 3/4 of the prompts carry a 512-token prefix at 0.2 ms per
prefill token (~102 ms uncached, ~0 cached), so the median TTFT differs several times over.
"""
import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.support.report_runs import hpcbench

EXAMPLE = Path(__file__).resolve().parents[2] / "recipes" / "examples" / "prefix-reasoning-sim.yaml"


def run(tmp_path_factory, caching: bool) -> Path:
    base = tmp_path_factory.mktemp(f"prefix-{caching}")
    recipe = yaml.safe_load(EXAMPLE.read_text())
    recipe["workload"].update(duration="3s", warmup="1s")
    recipe["monitoring"] = {"interval": "250ms"}
    recipe["servers"]["service_config"]["prefix_caching"] = caching
    path = base / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    session = "on" if caching else "off"
    done = hpcbench("run", str(path), "--results-dir", str(base / "results"), "--session",
                    session, "--no-live")
    assert done.returncode == 0, done.stdout + done.stderr
    return base / "results" / recipe["scenario"] / session


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return run(tmp_path_factory, False), run(tmp_path_factory, True)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "default" / "summary.json").read_text())


def test_the_prefix_cache_hits_and_lowers_ttft(runs):
    off, on = (summary(run_dir) for run_dir in runs)
    assert off["server"]["counters"]["prefix_cache_hits"] == 0
    hit_ratio = on["server"]["derived"]["prefix_cache_hit_ratio"]
    # 3/4 of the prompts are 512 shared + 64 own tokens; whole 16-token blocks of the prefix hit
    assert 0.5 < hit_ratio < 0.9
    assert off["exact"]["ttft"]["p50"] > 3 * on["exact"]["ttft"]["p50"]


def test_compare_shows_ttft_and_the_hit_ratio_side_by_side(runs):
    done = hpcbench("compare", str(runs[0]), str(runs[1]))
    assert done.returncode == 0, done.stderr
    assert "prefix_cache_hit_ratio" in done.stdout and "ttft_p50" in done.stdout


def test_reasoning_is_split_in_summary_exports_and_report(runs):
    run_dir = runs[1]
    overall = summary(run_dir)["overall"]
    assert overall["error_total"] == 0
    # 32 output tokens per answer, the first 8 of them reasoning
    assert overall["reasoning_tokens"] * 4 == overall["output_tokens"] > 0
    assert overall["answer_tokens"] * 4 == overall["output_tokens"] * 3
    latency = summary(run_dir)["exact"]
    assert latency["ttfr"]["count"] == latency["ttfa"]["count"] == overall["ok"]
    assert latency["ttfa"]["p50"] > latency["ttfr"]["p50"] == latency["ttft"]["p50"]
    with open(run_dir / "summary.csv", newline="") as source:
        row, = csv.DictReader(source)
    assert float(row["ttfa_p50_ms"]) > float(row["ttfr_p50_ms"])
    assert int(row["reasoning_tokens"]) == overall["reasoning_tokens"]
    assert "TTFR p50 (ms)" in (run_dir / "report.html").read_text()
    done = hpcbench("report", str(run_dir), "--export", "csv")
    assert done.returncode == 0, done.stderr
    with open(run_dir / "requests.csv", newline="") as source:
        requests = [r for r in csv.DictReader(source) if r["phase"] == "measured"]
    assert requests and all(r["reasoning_tokens"] == "8" for r in requests)
    assert all(float(r["ttfa_ms"]) > float(r["ttfr_ms"]) for r in requests)
