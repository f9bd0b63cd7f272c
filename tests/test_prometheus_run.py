"""During a real local `hpcbench run` (coordinator, executors, monitor, simulator as processes), a
real Prometheus scrapes the coordinator's endpoint (recipe monitoring.prometheus) and its query
API returns the session's latency, throughput and the monitor's node series."""
from __future__ import annotations

import os
import subprocess
import sys

import yaml

from tests.support.ports import free_port
from tests.support.prometheus_stack import prometheus, query
from tests.support.sim_process import sim_process
from tests.support.waiting import wait_until


def test_prometheus_scrapes_the_coordinator_and_monitor_series_during_a_local_run(tmp_path):
    port = free_port()
    with sim_process(tmp_path) as url, \
            prometheus(tmp_path / "prometheus", [{"job_name": "hpcbench-coordinator",
                                                  "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]
                       ) as prometheus_url:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({
            "scenario": "prom-run", "orchestration": {"mode": "local"}, "endpoints": [url],
            "workload": {"service": "simulator", "model": "sim-model", "duration": "4s",
                         "warmup": "0.5s", "request_timeout": "10s", "concurrency": 2,
                         "load": {"pattern": "closed"},
                         "dataset": {"input_tokens": {"distribution": "fixed", "mean": 16},
                                     "output_tokens": {"distribution": "fixed", "mean": 8}}},
            "monitoring": {"interval": "250ms", "prometheus": {"enabled": True, "port": port}},
        }))
        run = subprocess.Popen(
            [sys.executable, "-m", "hpcbench.coordinator.cli", "run", str(recipe), "--no-live",
             "--results-dir", str(tmp_path / "results"), "--session", "s1", "--executors", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            output, _ = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        assert run.returncode == 0, output
        assert (tmp_path / "results" / "prom-run" / "s1" / "prometheus.port").read_text().strip() \
            == str(port)

        def series(promql: str) -> list[dict]:
            return wait_until(lambda: query(prometheus_url, promql), 30, what=promql)

        # Prometheus keeps what it scraped while the run lasted
        requests = series('max_over_time(hpcbench_requests_total{run="s1"}[5m])')
        assert float(requests[0]["value"][1]) > 0
        ttft = series('max_over_time(hpcbench_latency_seconds{metric="ttft",quantile="0.5"}[5m])')
        assert 0 < float(ttft[0]["value"][1]) < 10
        assert series('max_over_time(hpcbench_requests_per_second[5m]) > 0')
        cpu = series('max_over_time(hpcbench_node_cpu_utilisation_ratio{run="s1"}[5m])')
        assert cpu[0]["metric"]["job"] == "hpcbench-coordinator"
        assert series('max_over_time(hpcbench_monitor_samples_total{run="s1"}[5m]) >= 2')
