"""The server's own view of each trial, kept and reported: real `hpcbench run`s deploying the
simulator (real processes: coordinator, executor, monitor, simulator), whose /metrics the
monitor scrapes.

The simulator has two batch slots (max_num_seqs 2) and the sweep runs 2 then 4 closed-loop
clients with no warmup, so what the server must have counted is known: every request the
client measured and nothing else (the span is bracketed by scrapes before the first request
and after the last), never more than 2 running, none waiting at concurrency 2, and at
concurrency 4 requests that waited for a slot.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from hpcbench.coordinator.report.markup import cell
from tests.integration.test_run_e2e import trial_dirs
from tests.support.report_runs import hpcbench

SCENARIO = "server-view"


def run(tmp_path: Path, monitoring: bool = True) -> Path:
    recipe = {
        "scenario": SCENARIO, "runtime": "process", "orchestration": {"mode": "local"},
        "workload": {"service": "simulator", "model": "sim-model", "api": "openai-chat",
                     "duration": "1.5s", "warmup": "0s", "request_timeout": "10s",
                     "concurrency": [2, 4], "load": {"pattern": "closed"},
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 32},
                                 "output_tokens": {"distribution": "fixed", "mean": 8}}},
        "servers": {"service_config": {"max_num_seqs": 2}},
        "monitoring": {"enabled": monitoring, "interval": "250ms"},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    done = hpcbench("run", str(path), "--results-dir", str(tmp_path / "results"),
                    "--session", "s", "--no-live")
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp_path / "results" / SCENARIO / "s"


@pytest.fixture(scope="module")
def monitored(tmp_path_factory) -> Path:
    return run(tmp_path_factory.mktemp("server-view"))


def summaries(run_dir: Path) -> dict[str, dict]:
    return {name: json.loads((path / "summary.json").read_text())
            for name, path in trial_dirs(run_dir).items()}


def test_each_trial_keeps_the_scraped_series_over_its_window(monitored):
    for name, directory in trial_dirs(monitored).items():
        summary = json.loads((directory / "summary.json").read_text())
        server = summary["server"]
        with open(directory / server["file"], newline="") as source:
            rows = list(csv.DictReader(source))
        stamps = sorted({int(row["ts_ns"]) for row in rows})
        window = summary["window"]
        # bracketed: a scrape at or before the first request, one at or after the last
        assert stamps[0] <= window["start_ns"] and stamps[-1] >= window["end_ns"], name
        assert server["covers_window"] and server["scrapes"] == len(stamps)
        assert server["scrapes_answered"] == server["scrapes"]
        metrics = {row["metric"] for row in rows}
        assert {"hpcbench_server_up", "hpcbench_server_requests_running",
                "hpcbench_server_time_to_first_token_seconds_bucket"} <= metrics
        buckets = [row for row in rows if row["metric"].endswith("_bucket")]
        assert buckets and all(row["le"] for row in buckets)
        assert all(not row["le"] for row in rows if not row["metric"].endswith("_bucket"))


def test_the_server_counted_exactly_what_the_client_measured(monitored):
    for name, summary in summaries(monitored).items():
        overall, server = summary["overall"], summary["server"]
        assert overall["error_total"] == 0
        counters = server["counters"]
        assert counters["requests_finished"] == overall["requests"], name
        assert counters["prompt_tokens"] == overall["input_tokens"], name
        assert counters["generation_tokens"] == overall["output_tokens"], name
        histograms = server["histograms"]
        assert histograms["ttft"]["count"] == summary["exact"]["ttft"]["count"]
        assert histograms["itl"]["count"] == summary["exact"]["itl"]["count"]
        # a prompt's TTFT in the simulator is its queue time plus its prefill time
        ttft_total = histograms["ttft"]["mean_ms"] * histograms["ttft"]["count"]
        parts = sum(histograms[part]["mean_ms"] * histograms[part]["count"]
                    for part in ("queue_time", "prefill_time"))
        assert ttft_total == pytest.approx(parts, rel=1e-6)


def test_gauges_respect_the_servers_batch_slots(monitored):
    found = summaries(monitored)
    for summary in found.values():   # never more running than the two slots
        assert summary["server"]["gauges"]["requests_running"]["max"] <= 2
    two, four = found["concurrency-2"]["server"], found["concurrency-4"]["server"]
    assert two["gauges"]["requests_waiting"]["max"] == 0       # two clients never wait
    # four clients on two slots: requests waited, so the server's queue time grew
    assert four["histograms"]["queue_time"]["mean_ms"] > two["histograms"]["queue_time"]["mean_ms"]
    for server in (two, four):
        usage = server["gauges"]["kv_cache_usage_ratio"]
        assert 0 <= usage["min"] <= usage["mean"] <= usage["max"] <= 1
    # Little's law over the span: a closed-loop client has one request at a time, and every
    # request of the trial lies inside the span
    for concurrency, server in ((2, two), (4, four)):
        derived = server["derived"]
        assert 0 < derived["requests_queued_mean"] < derived["requests_in_server_mean"] \
            <= concurrency
    assert four["derived"]["requests_queued_mean"] > two["derived"]["requests_queued_mean"]


def test_the_client_ttft_split_adds_up(monitored):
    for name, summary in summaries(monitored).items():
        split = summary["server"]["ttft_split"]
        assert split["client_requests"] == split["server_requests"] == summary["overall"]["ok"]
        assert split["client_ttft_mean_ms"] == pytest.approx(summary["exact"]["ttft"]["mean"])
        assert split["client_dispatch_mean_ms"] == 0   # closed loop: TTFT starts at the send
        assert split["client_dispatch_mean_ms"] + split["server_ttft_mean_ms"] \
            + split["rest_mean_ms"] == pytest.approx(split["client_ttft_mean_ms"])
        # the client sees the first token after the server wrote it
        assert split["rest_mean_ms"] >= -0.05 * split["client_ttft_mean_ms"], name
        assert 0 < split["server_share"] <= 1.05


def test_the_report_shows_the_server_beside_the_client(monitored):
    html = (monitored / "report.html").read_text()
    section = html[html.index('<h2 id="server">'):html.index("<h2", html.index('id="server"'))]
    assert "Latency: client and server side by side" in section
    assert "Where the client's TTFT goes" in section
    assert section.count("<img ") == 1 + len(trial_dirs(monitored))   # split + one per trial
    for name, summary in summaries(monitored).items():
        split = summary["server"]["ttft_split"]
        row = (f'<td class="text">{name}</td><td>{cell(split["client_requests"])}</td>'
               f'<td>{cell(int(split["server_requests"]))}</td>'
               f'<td>{cell(split["client_ttft_mean_ms"])}</td>')
        assert row in section, row
        server_ttft = summary["server"]["histograms"]["ttft"]
        assert (f'<td class="text">TTFT</td><td class="text">server</td>'
                f'<td>{cell(int(server_ttft["count"]))}</td>'
                f'<td>{cell(server_ttft["mean_ms"])}</td>') in section
    # rebuilt from the run directory alone: the same bytes
    assert hpcbench("report", str(monitored)).returncode == 0
    assert (monitored / "report.html").read_text() == html


def test_without_monitoring_nothing_is_kept_and_the_report_says_so(tmp_path):
    run_dir = run(tmp_path, monitoring=False)
    for name, directory in trial_dirs(run_dir).items():
        assert "server" not in json.loads((directory / "summary.json").read_text()), name
        assert not (directory / "server_metrics.csv").exists()
    html = (run_dir / "report.html").read_text()
    assert "Not measured: no monitor scraped the server" in html
