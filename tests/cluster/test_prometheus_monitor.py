"""The monitor's Prometheus side against the real tools: promtool lints the exposition, a real
Prometheus scrapes a monitor that watches a real simulator (its /metrics and its process), and
a real Pushgateway receives the monitor's pushes, including the final values at exit."""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import fake_nvml
from tests.support.monitor_process import monitor_process
from tests.support.prometheus_stack import binary, prometheus, pushgateway, query
from tests.support.waiting import wait_until

HPCBENCH = str(Path(sys.executable).with_name("hpcbench"))


@pytest.fixture
def simulator(tmp_path) -> Iterator[tuple[int, str]]:
    """The built-in simulator as a real process: yields (pid, its /metrics URL)."""
    port_file = tmp_path / "sim.port"
    log = (tmp_path / "sim.log").open("w")
    process = subprocess.Popen([HPCBENCH, "sim", "--port", "0", "--port-file", str(port_file)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: port_file.exists() and port_file.read_text().strip()
                   or process.poll() is not None, 30, what="the simulator's port file")
        assert process.poll() is None, (tmp_path / "sim.log").read_text()
        yield process.pid, f"http://127.0.0.1:{int(port_file.read_text())}/metrics"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def full_monitor(tmp_path, cli_env, simulator, *extra):
    """A monitor with two fake_nvml GPUs watching the simulator; yields (process, port)."""
    pid, metrics_url = simulator
    env = fake_nvml.child_env(cli_env, tmp_path / "fake_nvml", count=2)
    with monitor_process(tmp_path / "monitor", "--node", "nodeP", "--run-id", "run-p",
                         "--interval", "200ms", "--server-metrics", metrics_url,
                         "--service-pid", str(pid), *extra, env=env) as running:
        yield running


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_promtool_accepts_the_monitor_exposition(tmp_path, cli_env, simulator):
    promtool = binary("promtool", "prometheus")
    with full_monitor(tmp_path, cli_env, simulator) as (_, port):
        text = wait_until(lambda: (lambda t: "hpcbench_server_up" in t and t)(scrape(port)), 15,
                          what="a full exposition")
    for family in ("hpcbench_gpu_energy_joules_total", "hpcbench_service_cpu_seconds_total",
                   "hpcbench_server_kv_cache_usage_ratio", "hpcbench_node_cpu_core_utilisation_ratio"):
        assert f"\n{family}{{" in text, family
    # the server's own histograms, as one Prometheus histogram each
    assert "# TYPE hpcbench_server_time_to_first_token_seconds histogram" in text
    assert 'hpcbench_server_time_to_first_token_seconds_bucket{le="+Inf",' in text
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), (
        lint.stdout + lint.stderr)


def test_prometheus_scrapes_a_monitor_watching_the_simulator(tmp_path, cli_env, simulator):
    with full_monitor(tmp_path, cli_env, simulator) as (_, port):
        scrape_configs = [{"job_name": "hpcbench-monitor",
                           "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]
        with prometheus(tmp_path / "prometheus", scrape_configs) as url:
            def series(promql):
                return wait_until(lambda: query(url, promql), 30, what=promql)

            cpu = series('hpcbench_node_cpu_utilisation_ratio{node="nodeP",run="run-p"}')
            assert cpu[0]["metric"]["job"] == "hpcbench-monitor"
            assert 0.0 <= float(cpu[0]["value"][1]) <= 1.0
            gpus = series("hpcbench_gpu_power_watts")
            assert {item["metric"]["gpu"] for item in gpus} == {"GPU-fake-0", "GPU-fake-1"}
            assert all(float(item["value"][1]) == 300.0 for item in gpus)
            assert float(series("hpcbench_server_up")[0]["value"][1]) == 1.0
            assert float(series("hpcbench_server_kv_cache_usage_ratio")[0]["value"][1]) == 0.0
            # histograms arrive as histograms: their buckets carry `le`
            buckets = series('hpcbench_server_time_to_first_token_seconds_bucket{le="+Inf"}')
            assert buckets[0]["metric"]["node"] == "nodeP"
            assert float(series("hpcbench_service_up")[0]["value"][1]) == 1.0
            assert float(series("hpcbench_service_resident_memory_bytes")[0]["value"][1]) > 1e6
            # counters really count: the sample counter grows between scrapes
            wait_until(lambda: query(url, "increase(hpcbench_monitor_samples_total[10s]) > 0"),
                       30, what="a growing sample counter")


def test_pushgateway_receives_pushes_and_keeps_the_final_values(tmp_path, cli_env):
    with pushgateway(tmp_path / "pushgateway") as gateway:
        host_port = gateway.removeprefix("http://")

        def pushed() -> str:
            return urllib.request.urlopen(f"{gateway}/metrics", timeout=5).read().decode()

        with monitor_process(tmp_path / "monitor", "--node", "nodeQ", "--interval", "100ms",
                             "--enable-monitoring", "--pushgateway-node", host_port,
                             "--push-interval", "300ms", env=cli_env,
                             serve_prometheus=False) as (process, _):
            wait_until(lambda: 'hpcbench_node_cpu_utilisation_ratio{instance="nodeQ",'
                               'job="hpcbench-monitor",node="nodeQ"' in pushed(), 30,
                       what="a push from the monitor")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        stderr = (tmp_path / "monitor" / "monitor.stderr").read_text()
        samples = int(stderr.split("stopped after ")[1].split()[0])
        final = [line for line in pushed().splitlines()
                 if line.startswith("hpcbench_monitor_samples_total{")]
        assert len(final) == 1 and float(final[0].split()[-1]) == samples


def test_an_unreachable_pushgateway_never_stops_sampling(tmp_path, cli_env):
    from tests.support.ports import free_port
    with monitor_process(tmp_path / "monitor", "--interval", "50ms", "--enable-monitoring",
                         "--pushgateway-node", f"127.0.0.1:{free_port()}", "--push-interval",
                         "100ms", env=cli_env) as (_, port):
        wait_until(lambda: any(line.startswith("hpcbench_monitor_push_failures_total{")
                               and float(line.split()[-1]) >= 3
                               for line in scrape(port).splitlines()), 30,
                   what="several failed pushes while sampling goes on")
    stderr = (tmp_path / "monitor" / "monitor.stderr").read_text()
    assert stderr.count("push to Pushgateway") == 1  # one line per outage, not per push
