"""The coordinator's Prometheus endpoint (hpcbench.coordinator.bus.prometheus) on real parts: sample
batches PUSHed to a real AggregatorServer, a real hpcbench-monitor PUSHing telemetry to it, the
metrics bus (BusPublisher) carrying both to a SessionMetricsServer, scraped by a real
Prometheus whose query API returns the session's latency, throughput, errors and node series."""
from __future__ import annotations

import subprocess

import pytest
import zmq
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hpcbench.coordinator.bus.prometheus import SessionCollector, SessionMetricsServer
from hpcbench.coordinator.bus.publisher import BusPublisher
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.ingest.receiver import AggregatorServer
from tests.support.known_inputs import CHUNKS, sample_batch
from tests.support.monitor_process import monitor_process
from tests.support.prometheus_stack import binary, prometheus, query
from tests.support.waiting import wait_until


@pytest.fixture
def session(tmp_path):
    """Aggregator + bus + session metrics endpoint, as the coordinator runs them."""
    aggregator = Aggregator(run_id="run-c", interval_s=0.2)
    aggregator.open_trial("trial-1")
    with BusPublisher("tcp://127.0.0.1:0", run="run-c") as bus, \
            AggregatorServer(aggregator, bus=bus) as server, \
            SessionMetricsServer(bus.endpoint) as metrics:
        yield server.endpoint, metrics


def test_prometheus_scrapes_the_session_and_its_nodes_through_the_coordinator(
        tmp_path, cli_env, session):
    endpoint, metrics = session
    context = zmq.Context.instance()
    executor = context.socket(zmq.PUSH)
    executor.setsockopt(zmq.LINGER, 2000)
    executor.connect(endpoint)
    try:
        for seq in range(3):
            executor.send(sample_batch(seq, n=50, timeouts=2))
    finally:
        executor.close()
    with monitor_process(tmp_path / "monitor", "--coordinator-telemetry", endpoint,
                         "--run-id", "run-c", "--node", "nodeC", "--interval", "100ms",
                         env=cli_env, serve_prometheus=False):
        scrape_configs = [{"job_name": "hpcbench-coordinator",
                           "static_configs": [{"targets": [f"127.0.0.1:{metrics.port}"]}]}]
        with prometheus(tmp_path / "prometheus", scrape_configs) as url:
            def value(promql):
                result = wait_until(lambda: query(url, promql), 30, what=promql)
                assert len(result) == 1, result
                return float(result[0]["value"][1])

            wait_until(lambda: query(url, 'hpcbench_requests_total{trial="trial-1"} == 150'), 30,
                       what="all 150 requests counted")
            assert value('hpcbench_request_errors_total{error="timeout"}') == 6
            assert value('hpcbench_output_tokens_total') == 144 * CHUNKS
            assert value('hpcbench_latency_seconds{metric="ttft",quantile="0.99"}') == \
                pytest.approx(0.1, rel=1e-3)
            assert value('hpcbench_latency_seconds_count{metric="itl"}') == 144 * (CHUNKS - 1)
            assert value('hpcbench_latency_seconds{metric="itl",quantile="0.5"}') == \
                pytest.approx(0.02, rel=1e-3)
            assert value('hpcbench_sample_batches_missing_total') == 0
            node = value('hpcbench_node_cpu_utilisation_ratio{node="nodeC",run="run-c"}')
            assert 0.0 <= node <= 1.0
            assert value('hpcbench_telemetry_messages_total') >= 1


def test_session_exposition_passes_promtool_with_interval_and_cumulative_series(tmp_path):
    promtool = binary("promtool", "prometheus")
    aggregator = Aggregator(run_id="run-c", interval_s=1.0)
    aggregator.open_trial("trial-1", slos_s={"ttft": 0.5})
    aggregator.ingest(sample_batch(0, n=20, timeouts=1))
    collector = SessionCollector()
    collector.update_snapshot(aggregator.snapshot())
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    found = {(sample.name, sample.labels.get("metric"), sample.labels.get("quantile")): sample.value
             for family in text_string_to_metric_families(text) for sample in family.samples}
    assert found[("hpcbench_interval_latency_seconds", "ttft", "0.5")] == pytest.approx(0.1, rel=1e-3)
    assert found[("hpcbench_good_requests_total", None, None)] == 19
    assert found[("hpcbench_requests_per_second", None, None)] > 0
    assert ("hpcbench_goodput_requests_per_second", None, None) in found
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr


def test_a_snapshot_without_requests_exposes_nothing_misleading():
    collector = SessionCollector()
    collector.update_snapshot({"run": "r", "trial": None, "interval": None, "cumulative": None,
                               "integrity": {}})
    assert [family.samples for family in collector.collect()] == []
