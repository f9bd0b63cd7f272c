"""During a real local `hpcbench run` (coordinator, executors, monitor, simulator as processes), a
real Prometheus scrapes the coordinator's endpoint (recipe monitoring.prometheus.port) and the
monitor's own (monitoring.prometheus.monitor_port), and its query API returns the session's
latency (summaries and histograms), throughput and the node's series from both. A monitor port
that is taken fails the run with E005 naming the port and the key, before any load."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import yaml

from hpcbench.common.errors import ERROR_CODES
from tests.support.ports import free_port
from tests.support.prometheus_stack import prometheus, query, wait_for_targets
from tests.support.sim_process import sim_process
from tests.support.waiting import wait_until


def hpcbench_run(tmp_path, url: str, prometheus_settings: dict) -> subprocess.CompletedProcess:
    """`hpcbench run` of a short closed-loop load against the simulator at `url`."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "scenario": "prom-run", "orchestration": {"mode": "local"}, "endpoints": [url],
        "workload": {"service": "simulator", "model": "sim-model", "duration": "4s",
                     "warmup": "0.5s", "request_timeout": "10s", "concurrency": 2,
                     "load": {"pattern": "closed"},
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 16},
                                 "output_tokens": {"distribution": "fixed", "mean": 8}}},
        "monitoring": {"interval": "250ms", "prometheus": {"enabled": True, **prometheus_settings}},
    }))
    return subprocess.run(
        [sys.executable, "-m", "hpcbench.coordinator.cli.main", "run", str(recipe), "--no-live",
         "--results-dir", str(tmp_path / "results"), "--session", "s1", "--executors", "1"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_prometheus_scrapes_the_coordinator_and_monitor_series_during_a_local_run(tmp_path):
    port, monitor_port = free_port(), free_port()
    jobs = {"hpcbench-coordinator": port, "hpcbench-monitor": monitor_port}
    with sim_process(tmp_path) as url, \
            prometheus(tmp_path / "prometheus",
                       [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
                        for job, target in jobs.items()]) as prometheus_url:
        wait_for_targets(prometheus_url, len(jobs))
        done = hpcbench_run(tmp_path, url, {"port": port, "monitor_port": monitor_port})
        assert done.returncode == 0, done.stdout + done.stderr
        session = tmp_path / "results" / "prom-run" / "s1"
        assert (session / "prometheus.port").read_text().strip() == str(port)
        assert (session / "telemetry" / "localhost.prometheus.port").read_text().strip() \
            == str(monitor_port)

        def series(promql: str) -> list[dict]:
            return wait_until(lambda: query(prometheus_url, promql), 30, what=promql)

        # Prometheus keeps what it scraped while the run lasted
        requests = series('max_over_time(hpcbench_requests_total{run="s1"}[5m])')
        assert float(requests[0]["value"][1]) > 0
        ttft = series('max_over_time(hpcbench_latency_seconds{metric="ttft",quantile="0.5"}[5m])')
        assert 0 < float(ttft[0]["value"][1]) < 10
        assert series('max_over_time(hpcbench_requests_per_second[5m]) > 0')
        ttft_median = series('histogram_quantile(0.5, max_over_time('
                             'hpcbench_request_latency_seconds_bucket{metric="ttft",run="s1"}[5m]))')
        assert 0 < float(ttft_median[0]["value"][1]) < 10
        e2e = series('max_over_time(hpcbench_request_latency_seconds_count{metric="e2e"}[5m])')
        assert float(e2e[0]["value"][1]) > 0
        # the node's series arrive twice: re-exposed by the coordinator, and from the monitor
        for job in jobs:
            for name in ("hpcbench_node_cpu_utilisation_ratio", "hpcbench_node_memory_used_bytes"):
                node = series(f'max_over_time({name}{{job="{job}",node="localhost",run="s1"}}[5m])')
                assert float(node[0]["value"][1]) > 0, (job, name)
            assert series(f'max_over_time(hpcbench_monitor_samples_total{{job="{job}",run="s1"}}[5m]) >= 2')


def test_a_taken_monitor_port_is_e005_naming_the_port_and_the_key(tmp_path):
    with sim_process(tmp_path) as url, socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = hpcbench_run(tmp_path, url, {"port": free_port(), "monitor_port": port})
    assert done.returncode == ERROR_CODES["E005"][1], done.stdout + done.stderr
    assert "error E005" in done.stderr and "Traceback" not in done.stdout + done.stderr
    for words in (f"port {port}", "monitoring.prometheus.monitor_port", "in use"):
        assert words in done.stderr, (words, done.stderr)
    assert "running |" not in done.stdout       # no trial ever started
