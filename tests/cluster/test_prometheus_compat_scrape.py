"""The reference toolkit's Prometheus names (monitoring.prometheus.compat_names: reference,
`hpcbench-monitor --compat-names reference`) against the real tools: promtool reads both
expositions and finds nothing but the reference's own non-base unit (megabytes), a real
Pushgateway takes the names under its grouping key, and a real Prometheus scraping a local
`hpcbench run` of an Ollama workload answers the PromQL of the reference's documentation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from hpcbench.coordinator.bus.prometheus import SessionCollector
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.monitor.compat import MIB
from hpcbench.proto import bus, telemetry
from tests.support import fake_nvml
from tests.support.known_inputs import sample_batch
from tests.support.monitor_process import monitor_process
from tests.support.ports import free_port
from tests.support.prometheus_stack import binary, prometheus, pushgateway, query, wait_for_targets
from tests.support.sim_process import sim_process
from tests.support.waiting import wait_until

# promtool's lint wants base units; these two names are the reference's, kept as they are (the
# same readings in bytes are hpcbench_node_memory_used_bytes, hpcbench_gpu_memory_used_bytes)
REFERENCE_UNIT_FINDINGS = {
    'gpu_memory_used_megabytes use base unit "bytes" instead of "megabytes"',
    'ram_used_megabytes use base unit "bytes" instead of "megabytes"',
}


def promtool_findings(text: str) -> set[str]:
    """promtool check metrics' lint findings; a text it cannot parse fails the test."""
    lint = subprocess.run([binary("promtool", "prometheus"), "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=60)
    assert lint.returncode in (0, 3), lint.stdout + lint.stderr   # 3: lint findings only
    return {line.strip() for line in (lint.stdout + lint.stderr).splitlines() if line.strip()}


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_promtool_finds_nothing_but_the_references_megabytes_in_both_expositions(tmp_path,
                                                                                 cli_env):
    env = fake_nvml.child_env(cli_env, tmp_path / "fake_nvml", count=2)
    with monitor_process(tmp_path / "monitor", "--node", "nodeP", "--interval", "100ms",
                         "--compat-names", "reference", env=env) as (_, port):
        monitor_text = wait_until(lambda: (lambda t: "\ngpu_memory_used_megabytes{" in t and t)(
            scrape(port)), 15, what="the reference names on the monitor's endpoint")
    assert 'gpu_utilization_percent{gpu_id="1",instance="nodeP"} 50.0' in monitor_text
    assert f'gpu_memory_used_megabytes{{gpu_id="0",instance="nodeP"}} {10 * 2**30 / MIB}' \
        in monitor_text
    assert promtool_findings(monitor_text) == REFERENCE_UNIT_FINDINGS

    aggregator = Aggregator(run_id="run-c", interval_s=1.0)
    aggregator.open_trial("trial-1")
    aggregator.ingest(sample_batch(0, n=20, timeouts=1))
    collector = SessionCollector(compat="reference", service="ollama")
    collector.update_bus_message({"topic": bus.EVENT, "seq": 0, "data": {
        "event": "trial_start", "session": "s", "state": "RUNNING", "trial": "trial-1",
        "index": 0, "params": {}}})
    collector.workload.streams("trial-1", 4)
    collector.update_bus_message({"topic": bus.SNAPSHOT, "seq": 0, "data": aggregator.snapshot()})
    gpu = {"gpu": "GPU-x", "index": "0", "model": "m"}
    collector.update_bus_message({"topic": bus.TELEMETRY, "seq": 0, "data": telemetry.build(
        "run-c", "nodeC", 0, 1, {"hpcbench_node_cpu_utilisation_ratio": 0.5,
                                 "hpcbench_node_memory_used_bytes": 2.0 * MIB},
        [("hpcbench_gpu_memory_used_bytes", gpu, 4.0 * MIB)])})
    registry = CollectorRegistry()
    registry.register(collector)
    session_text = generate_latest(registry).decode()
    for line in ("ollama_requests_total 20.0", "ollama_errors_total 1.0", "ollama_threads 4.0",
                 "ollama_workload_running 1.0", 'cpu_usage_percent{instance="nodeC"} 50.0'):
        assert f"\n{line}\n" in session_text, line
    assert promtool_findings(session_text) == REFERENCE_UNIT_FINDINGS


def test_the_pushgateway_takes_the_reference_names_under_its_grouping_key(tmp_path, cli_env):
    with pushgateway(tmp_path / "pushgateway") as gateway:
        def pushed() -> str:
            return urllib.request.urlopen(f"{gateway}/metrics", timeout=5).read().decode()

        with monitor_process(tmp_path / "monitor", "--node", "nodeQ", "--interval", "100ms",
                             "--enable-monitoring", "--pushgateway-node",
                             gateway.removeprefix("http://"), "--push-interval", "200ms",
                             "--compat-names", "reference", env=cli_env) as (_, port):
            text = wait_until(lambda: (lambda t: "\ncpu_usage_percent{" in t and t)(pushed()), 30,
                              what="the reference names pushed")
            # the gateway accepted every push (it refuses a series carrying a grouping label)
            assert "\nhpcbench_monitor_push_failures_total{" in scrape(port)
            assert all(float(line.split()[-1]) == 0 for line in scrape(port).splitlines()
                       if line.startswith("hpcbench_monitor_push_failures_total{"))
    labels = {line.split("{", 1)[1].split("}", 1)[0] for line in text.splitlines()
              if line.startswith(("cpu_usage_percent{", "ram_used_megabytes{"))}
    assert labels == {'instance="nodeQ",job="hpcbench-monitor"'}


def hpcbench_run(tmp_path, url: str, port: int, monitor_port: int) -> subprocess.CompletedProcess:
    """`hpcbench run` of a closed-loop Ollama workload (the simulator speaks Ollama's API)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "scenario": "compat-run", "orchestration": {"mode": "local"}, "endpoints": [url],
        "workload": {"service": "ollama", "model": "sim-model", "duration": "4s",
                     "warmup": "0.5s", "request_timeout": "10s", "concurrency": 3,
                     "load": {"pattern": "closed"},
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 16},
                                 "output_tokens": {"distribution": "fixed", "mean": 8}}},
        "monitoring": {"interval": "250ms", "prometheus": {
            "enabled": True, "port": port, "monitor_port": monitor_port,
            "compat_names": "reference"}},
    }))
    return subprocess.run(
        [sys.executable, "-m", "hpcbench.coordinator.cli.main", "run", str(recipe), "--no-live",
         "--results-dir", str(tmp_path / "results"), "--session", "s1", "--executors", "2"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_prometheus_answers_the_references_promql_during_a_local_run(tmp_path):
    port, monitor_port = free_port(), free_port()
    jobs = {"hpcbench-coordinator": port, "hpcbench-monitor": monitor_port}
    # honor_labels keeps the exposition's instance (the node), as for a Pushgateway
    scrape_configs = [{"job_name": job, "honor_labels": True,
                       "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
                      for job, target in jobs.items()]
    with sim_process(tmp_path) as url, \
            prometheus(tmp_path / "prometheus", scrape_configs) as prometheus_url:
        wait_for_targets(prometheus_url, len(jobs))
        done = hpcbench_run(tmp_path, url, port, monitor_port)
        assert done.returncode == 0, done.stdout + done.stderr

        def values(promql: str) -> list[float]:
            result = wait_until(lambda: query(prometheus_url, promql), 30, what=promql)
            return [float(item["value"][1]) for item in result]

        # the reference's queries (its documentation, "Prometheus Queries"), over the run
        assert values("max_over_time(ollama_workload_running[5m])") == [1.0]
        assert values("max_over_time(ollama_threads[5m])") == [3.0]      # concurrency: 3
        requests, = values("max_over_time(ollama_requests_total[5m])")
        summary = json.loads(next((tmp_path / "results" / "compat-run" / "s1").glob(
            "*/summary.json")).read_text())["overall"]            # the trial's
        assert 0 < requests <= summary["requests"]
        assert values("max_over_time(ollama_errors_total[5m])") == [0.0]
        latency, = values("max_over_time(ollama_request_latency_seconds[5m])")
        assert 0 < latency < 10
        # throughput is requests over elapsed time, scrape by scrape
        for bound in ("min", "max"):
            ratio, = values(f"{bound}_over_time((ollama_requests_total / ollama_elapsed_seconds"
                            f" / ollama_throughput_rps)[5m:1s])")
            assert abs(ratio - 1) < 1e-6, (bound, ratio)
        # the node's names from both endpoints, instance = the node, job = the scrape job
        for job in jobs:
            cpu = values(f'max_over_time(cpu_usage_percent{{instance="localhost",job="{job}"}}[5m])')
            assert 0 < cpu[0] <= 100, job
            ram = values(f'max_over_time(ram_used_megabytes{{instance="localhost",job="{job}"}}[5m])')
            mib = values(f'max_over_time(hpcbench_node_memory_used_bytes{{job="{job}"}}[5m]) / 2^20')
            assert abs(ram[0] / mib[0] - 1) < 1e-9, job   # the same reading, in MiB
