"""Grafana dashboards and compose file under monitor/: valid files whose PromQL references only
metrics hpcbench really exports (names taken from live expositions). promtool checks the
Prometheus config in tests/cluster/test_prometheus_config.py."""
from __future__ import annotations

import http.server
import json
import os
import re
import threading
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hpcbench.coordinator.bus.prometheus import SessionCollector
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.ingest.receiver import AggregatorServer
from hpcbench.monitor.catalogue import HISTOGRAM_PARTS, METRICS, SERVER_HISTOGRAMS
from hpcbench.monitor.exposition import TelemetryCollector
from hpcbench.monitor.gpu import GpuSource
from hpcbench.monitor.node import NodeSource
from hpcbench.monitor.pushgateway import Pusher
from hpcbench.monitor.sampler import Outputs, Sampler
from hpcbench.monitor.server_metrics import ServerMetricsSource
from hpcbench.monitor.service_process import ServiceProcessSource
from hpcbench.monitor.telemetry_sender import TelemetrySender
from tests.support import fake_nvml
from tests.support.known_inputs import LLAMA_SERVER, NEW_VLLM, VLLM_HISTOGRAMS, sample_batch
from tests.support.ports import free_port
from tests.support.waiting import wait_until

MONITOR_DIR = Path(__file__).resolve().parents[2] / "monitor"
DASHBOARDS = sorted((MONITOR_DIR / "grafana" / "dashboards").glob("*.json"))

PROMQL_WORDS = {
    # aggregations, functions and keywords that can appear as bare words
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "and", "or", "unless", "offset", "rate", "irate", "increase", "delta", "idelta",
    "histogram_quantile", "label_replace", "label_join", "abs", "clamp_min", "clamp_max",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "last_over_time",
    "deriv", "predict_linear", "vector", "scalar", "time", "absent", "sort", "sort_desc",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (Grafana variables and labels removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                # string literals
    text = re.sub(r"\$\{?\w+\}?", "1", text)                        # $node, $__rate_interval
    text = re.sub(r"\{[^}]*\}", "", text)                           # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                          # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    words = re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text)
    return {word for word, call in words if not call and word not in PROMQL_WORDS}


def test_metric_name_extraction_understands_promql():
    expr = ('sum by (node) (rate(hpcbench_a_total{node=~"$node",x!="lo"}[$__rate_interval])) / '
            'on (node) group_left max(hpcbench_b{q="0.99"}) > 0')
    assert metric_names(expr) == {"hpcbench_a_total", "hpcbench_b"}


class _Vllm(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        # every server name hpcbench maps, vLLM's and llama-server's (no server has both)
        self.wfile.write((NEW_VLLM + VLLM_HISTOGRAMS + LLAMA_SERVER).encode())

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every sample name of a fully fed monitor exposition and coordinator exposition."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Vllm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch = pytest.MonkeyPatch()
    try:
        fake_nvml.install(monkeypatch, [fake_nvml.FakeGpu(uuid="GPU-x")])
        gpus, _ = GpuSource.open()
        collector = TelemetryCollector()
        sampler = Sampler("r", "n", 1.0, [
            NodeSource(), ServiceProcessSource(os.getpid()), gpus,
            ServerMetricsSource(f"http://127.0.0.1:{server.server_port}/metrics", 2.0)])
        sampler.outputs = Outputs(  # every output, so their own counters are exported too
            telemetry=TelemetrySender(f"tcp://127.0.0.1:{free_port()}", linger_ms=0),
            collector=collector,
            pusher=Pusher(f"127.0.0.1:{free_port()}", "n", collector, every_s=3600))
        sampler.sample_once()
        sampler.sample_once()
        sampler.outputs.telemetry.close()
        monitor_registry = CollectorRegistry()
        monitor_registry.register(collector)

        aggregator = Aggregator(run_id="run-c", interval_s=0.05)  # sample_batch's run
        aggregator.open_trial("trial-1", slos_s={"ttft": 1.0})
        aggregator.ingest(sample_batch(0, n=10, timeouts=1))
        session = SessionCollector()
        with AggregatorServer(aggregator) as coordinator:  # adds the telemetry counts
            snapshot = wait_until(lambda: coordinator.latest_snapshot, 10, what="a snapshot")
        session.update_snapshot(snapshot)
        session_registry = CollectorRegistry()
        session_registry.register(session)
        names = set()
        for registry in (monitor_registry, session_registry):
            for family in text_string_to_metric_families(generate_latest(registry).decode()):
                names.update(sample.name for sample in family.samples)
        return names
    finally:
        monkeypatch.undo()
        server.shutdown()
        server.server_close()


def test_the_monitor_exports_every_catalogued_metric(exported):
    assert set(METRICS) - exported == set()
    parts = {histogram + part for histogram in SERVER_HISTOGRAMS for part in HISTOGRAM_PARTS}
    assert parts - exported == set()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_is_valid_and_uses_only_exported_metrics(path, exported):
    board = json.loads(path.read_text())
    assert board["uid"] and board["title"] and board["panels"]
    variables = {item["name"] for item in board["templating"]["list"]}
    assert "datasource" in variables
    expressions = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    expressions += [item["query"]["query"] for item in board["templating"]["list"]
                    if item["type"] == "query"]
    used = set()
    for expr in expressions:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        for variable in re.findall(r"\$(\w+)", expr):
            assert variable in variables or variable.startswith("__"), (variable, expr)
        used |= metric_names(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", expr))
    assert used, "a dashboard without metrics"
    assert used - exported == set(), f"{path.name} uses metrics nobody exports"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboards_cover_latency_throughput_errors_and_node_resources():
    used = set()
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                used |= metric_names(target["expr"])
    for needed in ("hpcbench_interval_latency_seconds", "hpcbench_requests_per_second",
                   "hpcbench_output_tokens_per_second", "hpcbench_request_errors_total",
                   "hpcbench_node_cpu_utilisation_ratio", "hpcbench_node_memory_used_bytes",
                   "hpcbench_gpu_utilisation_ratio", "hpcbench_gpu_memory_used_bytes",
                   "hpcbench_gpu_power_watts"):
        assert needed in used, needed


def test_compose_stack_mounts_files_that_exist_and_provisions_the_dashboards():
    compose = yaml.safe_load((MONITOR_DIR / "compose.yaml").read_text())
    assert set(compose["services"]) == {"prometheus", "pushgateway", "grafana"}
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            assert (MONITOR_DIR / host).exists(), volume
    provider = yaml.safe_load((MONITOR_DIR / "grafana/provisioning/dashboards/hpcbench.yaml")
                              .read_text())["providers"][0]
    grafana_mounts = dict(volume.split(":")[:2] for volume in
                          compose["services"]["grafana"]["volumes"])
    assert grafana_mounts["./grafana/dashboards"] == provider["options"]["path"]
    datasource = yaml.safe_load((MONITOR_DIR / "grafana/provisioning/datasources/prometheus.yaml")
                                .read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and "prometheus:9090" in datasource["url"]
