"""`hpcbench-monitor` as a real process: telemetry over a real ZeroMQ socket, the CSV, the
Prometheus endpoint, fake_nvml GPUs in the child, clean stop on SIGTERM, clear errors."""
from __future__ import annotations

import csv
import signal
import subprocess
import urllib.request

import pytest
import zmq

from hpcbench.monitor.gpu import NO_GPU_LINE
from hpcbench.proto import telemetry
from tests.support import fake_nvml
from tests.support.monitor_process import MONITOR, monitor_process
from tests.support.waiting import wait_until


@pytest.fixture
def telemetry_pull():
    """The coordinator's side of the telemetry plane: a PULL socket on an ephemeral port."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield pull, f"tcp://127.0.0.1:{port}"
    finally:
        pull.close(0)
        context.term()


def scrape(port: int) -> bytes:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()


def receive(pull, count, timeout_ms=15_000):
    messages = []
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    while len(messages) < count:
        assert poller.poll(timeout_ms), f"only {len(messages)} of {count} telemetry messages came"
        messages.append(telemetry.decode(pull.recv()))
    return messages


def test_monitor_pushes_telemetry_with_fake_gpus_and_writes_the_csv(tmp_path, telemetry_pull,
                                                                    cli_env):
    pull, endpoint = telemetry_pull
    env = fake_nvml.child_env(cli_env, tmp_path / "fake_nvml", count=2)
    done = subprocess.run(
        [MONITOR, "--coordinator-telemetry", endpoint, "--run-id", "run-42", "--node", "nodeA",
         "--interval", "100ms", "--samples", "4", "--csv", str(tmp_path / "run" / "nodeA.csv")],
        capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2 NVIDIA GPU(s) visible" in done.stderr and NO_GPU_LINE not in done.stderr
    messages = receive(pull, 4)
    assert [m["seq"] for m in messages] == [0, 1, 2, 3]
    assert {(m["run"], m["node"]) for m in messages} == {("run-42", "nodeA")}
    assert all(b["ts_ns"] > a["ts_ns"] for a, b in zip(messages, messages[1:]))
    gpus = {labels["gpu"] for name, labels, _ in messages[-1]["series"]
            if name == "hpcbench_gpu_power_watts"}
    assert gpus == {"GPU-fake-0", "GPU-fake-1"}
    rows = list(csv.reader((tmp_path / "run" / "nodeA.csv").open()))
    assert rows[0] == ["timestamp", "gpu0_util", "gpu0_mem_used", "gpu0_power_W", "gpu1_util",
                       "gpu1_mem_used", "gpu1_power_W", "cpu_percent", "ram_used_MB"]
    assert len(rows) == 5 and rows[1][1:7] == ["50.0", "10240.0", "300.0", "50.0", "10240.0", "300.0"]


def test_without_a_gpu_one_clear_line_and_cpu_metrics_go_on(tmp_path, telemetry_pull, cli_env):
    pull, endpoint = telemetry_pull
    env = dict(cli_env)
    env.pop("PYTHONPATH", None)
    done = subprocess.run([MONITOR, "--coordinator-telemetry", endpoint, "--interval", "50ms",
                           "--samples", "2"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sum(NO_GPU_LINE in line for line in done.stderr.splitlines()) == 1
    messages = receive(pull, 2)
    assert "hpcbench_node_cpu_utilisation_ratio" in messages[1]["metrics"]
    assert not any(name.startswith("hpcbench_gpu_") for name, _, _ in messages[1]["series"])


def test_sigterm_stops_the_monitor_with_every_row_flushed(tmp_path, cli_env):
    csv_path = tmp_path / "node.csv"
    with monitor_process(tmp_path, "--interval", "50ms", "--csv", str(csv_path),
                         env=cli_env) as (process, port):
        wait_until(lambda: b"hpcbench_node_cpu_utilisation_ratio{" in scrape(port), 15,
                   what="node metrics on the Prometheus endpoint")
        wait_until(lambda: len(csv_path.read_text().splitlines()) >= 4, 15, what="CSV rows")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    stderr = (tmp_path / "monitor.stderr").read_text()
    samples = int(stderr.split("stopped after ")[1].split()[0])
    assert len(csv_path.read_text().splitlines()) == samples + 1  # header + one row per sample


def test_telemetry_waits_for_a_coordinator_that_comes_up_later(tmp_path, cli_env):
    """PUSH queues while nobody listens: the first messages are delivered, not lost."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    pull.unbind(f"tcp://127.0.0.1:{port}")
    try:
        with monitor_process(tmp_path, "--coordinator-telemetry", f"tcp://127.0.0.1:{port}",
                             "--interval", "50ms", env=cli_env) as (process, prometheus_port):
            wait_until(lambda: b"hpcbench_monitor_samples_total{" in scrape(prometheus_port), 15,
                       what="samples taken before the coordinator is up")
            pull.bind(f"tcp://127.0.0.1:{port}")
            assert [m["seq"] for m in receive(pull, 3)] == [0, 1, 2]
    finally:
        pull.close(0)
        context.term()


@pytest.mark.parametrize("args, message", [
    (["--interval", "0"], "--interval '0' must be longer than 0"),
    (["--interval", "fast"], "--interval: 'fast' is not a duration"),
    (["--enable-monitoring"], "--enable-monitoring needs --pushgateway-node"),
    (["--server-metrics", "localhost:8000/metrics"], "is not an http(s) URL"),
    (["--coordinator-telemetry", "10.0.0.1:5556"], "is not a ZeroMQ endpoint"),
    (["--service-pid", "999999999"], "--service-pid 999999999: no such process"),
    (["--prometheus-port", "70000"], "is not a TCP port"),
    (["--compat-names", "grafana"], "--compat-names 'grafana' is not one of none, reference"),
    (["--compat-names", "reference"], "but this monitor exposes none"),   # no endpoint, no push
])
def test_bad_options_fail_with_e006_naming_the_option(args, message, cli_env):
    done = subprocess.run([MONITOR, "--samples", "1", *args], capture_output=True, text=True,
                          env=cli_env, timeout=60)
    assert done.returncode == 2
    assert "error E006: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_busy_prometheus_port_is_an_e005_error(tmp_path, cli_env):
    with monitor_process(tmp_path, env=cli_env) as (_, port):
        done = subprocess.run([MONITOR, "--samples", "1", "--prometheus-port", str(port)],
                              capture_output=True, text=True, env=cli_env, timeout=60)
    assert done.returncode == 15 and "error E005: cannot serve Prometheus metrics" in done.stderr



def test_an_unwritable_csv_path_is_an_e006_error(tmp_path, cli_env):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = subprocess.run([MONITOR, "--samples", "1", "--csv", str(blocker / "node.csv")],
                          capture_output=True, text=True, env=cli_env, timeout=60)
    assert done.returncode == 2 and f"error E006: --csv {blocker / 'node.csv'}" in done.stderr


def test_the_reference_option_names_work(tmp_path, cli_env):
    """`--monitor-interval` and `--monitor-output`, as the product's reference names them, are
    the same options as --interval and --csv."""
    csv_path = tmp_path / "reference.csv"
    done = subprocess.run([MONITOR, "--monitor-interval", "50ms", "--monitor-output",
                           str(csv_path), "--samples", "3"],
                          capture_output=True, text=True, env=cli_env, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 3 and "cpu_percent" in rows[0] and "ram_used_MB" in rows[0]
