"""The server's own view of a trial from telemetry messages (monitor/server_view.py) and the
split of the client's TTFT (coordinator/session/server_view.py), on messages and sample
batches whose answers are known."""
from __future__ import annotations

import json
import math

import pytest

from hpcbench.coordinator.session.server_view import (
    SERVER_METRICS,
    client_ttft_parts,
    read_rows,
    record,
    ttft_split,
)
from hpcbench.monitor.server_view import (
    ServerMetricsLog,
    histogram_quantile,
    increase,
    quantile_bucket,
)
from hpcbench.proto import samples, telemetry
from tests.support.known_inputs import sample_batch

S = 1_000_000_000
TTFT = "hpcbench_server_time_to_first_token_seconds"


def scrape(ts_s: float, node: str = "n1", up: bool = True, finished: float = 0,
           running: float = 0, ttft: tuple[float, float, float] | None = None,
           ttft_sum: float = 0.0, **extra: float) -> dict:
    """A checked telemetry message carrying a server scrape; `ttft`: cumulative counts of the
    buckets le 0.1, 0.5 and +Inf."""
    metrics = {"hpcbench_server_up": 1.0 if up else 0.0, "hpcbench_node_load1": 0.5}
    series = []
    if up:
        metrics.update({"hpcbench_server_request_success_total": finished,
                        "hpcbench_server_requests_running": running, **extra})
        if ttft is not None:
            metrics.update({f"{TTFT}_sum": ttft_sum, f"{TTFT}_count": ttft[-1]})
            series = [(f"{TTFT}_bucket", {"le": le}, count)
                      for le, count in zip(("0.1", "0.5", "+Inf"), ttft)]
    return telemetry.check(telemetry.build("run", node, 0, int(ts_s * S), metrics, series))


def log_of(*messages: dict) -> ServerMetricsLog:
    log = ServerMetricsLog()
    for message in messages:
        log.observe(message)
    return log


def test_histogram_quantile_interpolates_inside_the_bucket_as_promql():
    buckets = {0.1: 3.0, 0.5: 4.0, math.inf: 5.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 * 2.5 / 3)   # from 0
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.1 + 0.4 * 0.5)
    assert histogram_quantile(0.99, buckets) == 0.5     # +Inf bucket: highest finite bound
    assert quantile_bucket(0.5, buckets) == (0.0, 0.1)
    assert quantile_bucket(0.7, buckets) == (0.1, 0.5)
    assert quantile_bucket(0.99, buckets) == (0.5, math.inf)
    assert histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    assert quantile_bucket(0.5, {0.1: 0.0, math.inf: 0.0}) is None


def test_increase_counts_a_reset_as_prometheus():
    assert increase([5, 7, 10]) == 5
    assert increase([5, 7, 2, 4]) == 2 + 2 + 2     # restarted at 7 -> 2
    assert increase([3]) == 0


def test_a_window_is_bracketed_by_scrapes_and_differenced_over_them():
    """Scrapes every second; the window 2.5 s .. 6.5 s is bracketed by the scrapes at 2 s and
    7 s: counters and histograms are differenced between those; gauges come from the scrapes
    inside; the file rows hold exactly the bracketing scrapes."""
    messages = [scrape(t, finished=10 * t, running=t,
                       ttft=(3 * t, 4 * t, 5 * t), ttft_sum=0.2 * 5 * t) for t in range(10)]
    view = log_of(*messages).trial(int(2.5 * S), int(6.5 * S))
    summary = view.summary
    assert summary["span"] == {"start_ns": 2 * S, "end_ns": 7 * S, "seconds": 5.0}
    assert summary["covers_window"] and summary["scrapes"] == 6
    assert summary["counters"]["requests_finished"] == 50
    running = summary["gauges"]["requests_running"]
    assert (running["min"], running["max"], running["mean"], running["scrapes"]) == (3, 6, 4.5, 4)
    ttft = summary["histograms"]["ttft"]
    assert ttft["count"] == 25 and ttft["mean_ms"] == pytest.approx(200.0)
    assert ttft["p50_ms"] == pytest.approx(100 * 12.5 / 15)
    assert ttft["p50_bucket_ms"] == [0.0, 100.0]
    assert ttft["p99_ms"] == pytest.approx(500.0) and ttft["p99_bucket_ms"] == [500.0, None]
    assert "requests_in_server_mean" not in summary["derived"]   # no E2E histogram here
    assert {row[0] for row in view.rows} == {t * S for t in range(2, 8)}
    assert ("hpcbench_node_load1" not in {row[2] for row in view.rows})   # the server's only
    buckets = [row for row in view.rows if row[0] == 7 * S and row[2] == f"{TTFT}_bucket"]
    assert [(row[3], row[4]) for row in buckets] == [("0.1", 21), ("0.5", 28), ("+Inf", 35)]
    json.dumps(summary, allow_nan=False)   # summary.json stays plain JSON


def test_littles_law_gives_the_mean_requests_in_the_server_and_its_queue():
    """Over 10 s, finished requests spent 30 s in the server and 5 s queued: 3 in the server
    and 0.5 queued on average."""
    def histogram(name: str, total: float, count: float) -> dict:
        return {f"hpcbench_server_{name}_seconds_sum": total,
                f"hpcbench_server_{name}_seconds_count": count}

    first = scrape(0, **histogram("e2e_request_latency", 0, 0),
                   **histogram("request_queue_time", 0, 0))
    last = scrape(10, **histogram("e2e_request_latency", 30, 12),
                  **histogram("request_queue_time", 5, 12))
    for message in (first, last):   # histograms need buckets too
        for name in ("e2e_request_latency", "request_queue_time"):
            count = message["metrics"][f"hpcbench_server_{name}_seconds_count"]
            message["series"].append([f"hpcbench_server_{name}_seconds_bucket", {"le": "+Inf"},
                                      count])
    derived = log_of(first, last).trial(1 * S, 9 * S).summary["derived"]
    assert derived["requests_in_server_mean"] == pytest.approx(3.0)
    assert derived["requests_queued_mean"] == pytest.approx(0.5)


def test_the_bracket_goes_by_when_the_server_answered_not_by_the_tick():
    """On a busy node a scrape is sent 0.3 s after the monitor's tick and read 0.1 s later:
    the scrape ticked at 2 s but read at 2.4 s may hold requests of a window starting at
    2.35 s, so the window starts from the one read at 1.4 s; it ends with the first scrape
    sent after its end."""
    messages = [scrape(t, finished=t, hpcbench_server_scrape_sent_time_seconds=t + 0.3,
                       hpcbench_server_scrape_read_time_seconds=t + 0.4) for t in range(10)]
    log = log_of(*messages)
    view = log.trial(int(2.35 * S), int(6.5 * S))
    assert view.summary["span"]["start_ns"] == int(1.4 * S)
    assert view.summary["span"]["end_ns"] == int(7.4 * S)
    assert view.summary["counters"]["requests_finished"] == 6
    assert log.covered(int(9.3 * S)) and not log.covered(int(9.31 * S))


def test_failed_scrapes_count_but_add_nothing_and_a_restart_is_not_negative():
    messages = [scrape(0, finished=100), scrape(1, finished=110), scrape(2, up=False),
                scrape(3, finished=5), scrape(4, finished=20)]
    summary = log_of(*messages).trial(int(0.5 * S), int(3.5 * S)).summary
    assert summary["scrapes"] == 5 and summary["scrapes_answered"] == 4
    assert summary["counters"]["requests_finished"] == 10 + 5 + 15


def test_a_failed_scrape_at_an_edge_is_not_the_bracket():
    """The scrape just before the window failed (a busy server missed the timeout): the
    window starts from the last answered one, or the requests between would be lost."""
    messages = [scrape(0, finished=0), scrape(1, up=False), scrape(2, finished=6),
                scrape(3, finished=12), scrape(4, up=False), scrape(5, finished=20)]
    summary = log_of(*messages).trial(int(1.5 * S), int(3.5 * S)).summary
    assert summary["span"]["start_ns"] == 0 and summary["span"]["end_ns"] == 5 * S
    assert summary["counters"]["requests_finished"] == 20 and summary["covers_window"]
    assert log_of(*messages).unanswered_nodes() == set()
    assert log_of(scrape(0, up=False), scrape(1, "n2")).unanswered_nodes() == {"n1"}
    down = log_of(*(scrape(t, up=False) for t in range(4))).trial(int(0.5 * S), int(2.5 * S))
    assert down.summary["scrapes_answered"] == 0 and down.summary["scrapes"] == 2
    assert down.summary["counters"] == {} and not down.summary["covers_window"]


def test_a_nan_gauge_is_left_out_and_summary_json_stays_plain():
    messages = [scrape(t, running=float("nan") if t == 1 else 3) for t in range(4)]
    summary = log_of(*messages).trial(int(0.5 * S), 3 * S).summary
    assert summary["gauges"]["requests_running"] == {"mean": 3, "min": 3, "max": 3,
                                                     "scrapes": 2}
    json.dumps(summary, allow_nan=False)


def test_nodes_add_up_and_keep_their_own_figures():
    messages = []
    for t in range(4):
        messages.append(scrape(t, "a", finished=2 * t, running=2,
                               hpcbench_server_kv_cache_usage_ratio=0.2))
        messages.append(scrape(t + 0.1, "b", finished=3 * t, running=4,
                               hpcbench_server_kv_cache_usage_ratio=0.6))
    summary = log_of(*messages).trial(int(0.5 * S), int(2.5 * S)).summary
    assert set(summary["nodes"]) == {"a", "b"}
    assert summary["counters"]["requests_finished"] == 2 * 3 + 3 * 3
    assert summary["nodes"]["a"]["counters"]["requests_finished"] == 6
    assert summary["gauges"]["requests_running"]["mean"] == 6          # summed
    assert summary["gauges"]["kv_cache_usage_ratio"]["mean"] == pytest.approx(0.4)  # averaged


def test_llama_server_busy_slots_and_rates_are_the_windows_own():
    """llama-server reports busy slots per decode since it started: the window's own value is
    recovered from the averages and decode counts at its edges."""
    first = scrape(0, hpcbench_server_busy_slots_per_decode=1.0,
                   hpcbench_server_decode_calls_total=100,
                   hpcbench_server_prompt_tokens_total=0, hpcbench_server_prompt_seconds_total=0,
                   hpcbench_server_generation_tokens_total=0,
                   hpcbench_server_generation_seconds_total=0)
    last = scrape(10, hpcbench_server_busy_slots_per_decode=2.0,
                  hpcbench_server_decode_calls_total=200,
                  hpcbench_server_prompt_tokens_total=800,
                  hpcbench_server_prompt_seconds_total=2.0,
                  hpcbench_server_generation_tokens_total=400,
                  hpcbench_server_generation_seconds_total=8.0)
    summary = log_of(first, last).trial(1 * S, 9 * S).summary
    assert summary["busy_slots_per_decode"] == pytest.approx((2 * 200 - 1 * 100) / 100)
    assert summary["derived"] == {"prompt_tokens_per_busy_s": 400.0,
                                  "generation_ms_per_token_per_slot": 20.0}


def test_no_scraped_server_gives_no_view_and_memory_stays_bounded():
    node_only = telemetry.build("run", "n1", 0, 1, {"hpcbench_node_load1": 1.0}, [])
    log = log_of(node_only)
    assert log.nodes == [] and log.trial(0, S) is None
    small = ServerMetricsLog(max_points=5)
    for t in range(20):
        small.observe(scrape(t, finished=t))
    assert small.trial(0, 19 * S).summary["scrapes"] == 5
    small.forget_before(17 * S)   # keeps the last scrape before 17 s: a window may start there
    summary = small.trial(int(16.5 * S), 19 * S).summary
    assert summary["span"]["start_ns"] == 16 * S and summary["scrapes"] == 4
    with pytest.raises(ValueError):
        small.trial(2 * S, S)


def test_the_client_ttft_splits_into_dispatch_server_and_the_rest():
    """sample_batch: open loop, sent 10 µs after the intended time, first token 100 ms after
    it; a server that measured 60 ms on average leaves 39.99 ms to the rest."""
    batches = [samples.decode(sample_batch(seq, n=10, timeouts=2)) for seq in range(3)]
    client = client_ttft_parts(batches)
    assert client == {"requests": 24, "ttft_mean_ms": 100.0, "dispatch_mean_ms": 0.01,
                      "after_send_mean_ms": pytest.approx(99.99)}
    split = ttft_split(client, {"histograms": {"ttft": {"count": 24, "mean_ms": 60.0}}})
    assert split["rest_mean_ms"] == pytest.approx(39.99)
    assert split["client_dispatch_mean_ms"] + split["server_ttft_mean_ms"] \
        + split["rest_mean_ms"] == pytest.approx(split["client_ttft_mean_ms"])
    assert split["server_share"] == pytest.approx(0.6)
    assert ttft_split(None, {"histograms": {"ttft": {"count": 0, "mean_ms": None}}}) is None


def test_record_writes_the_series_file_and_the_summary(tmp_path):
    messages = [scrape(t, finished=t, ttft=(t, t, t), ttft_sum=0.06 * t) for t in range(5)]
    batches = [samples.decode(sample_batch(0, n=4, timeouts=0))]
    summary = record(log_of(*messages), tmp_path, 1 * S, 3 * S, batches)
    assert summary["file"] == SERVER_METRICS
    assert summary["ttft_split"]["server_ttft_mean_ms"] == pytest.approx(60.0)
    rows = read_rows(tmp_path / SERVER_METRICS)
    assert {row[0] for row in rows} == {S, 2 * S, 3 * S}
    assert record(ServerMetricsLog(), tmp_path / "none", 1 * S, 3 * S, batches) is None
    assert not (tmp_path / "none").exists()
