"""Monitor sources read the real node, NVML (through fake_nvml) and a real HTTP /metrics
endpoint, and turn them into contract-conforming telemetry, CSV rows and energy (a real child
process tree: tests/integration/test_monitor_service_process.py)."""
from __future__ import annotations

import csv
import http.server
import logging
import threading

import psutil
import pytest

from hpcbench.monitor.catalogue import METRICS, SERVER_HISTOGRAMS
from hpcbench.monitor.csv_log import CsvLog
from hpcbench.monitor.energy import EnergyMeter, trial_energy
from hpcbench.monitor.exposition import TelemetryCollector
from hpcbench.monitor.gpu import NO_GPU_LINE, GpuSource
from hpcbench.monitor.node import NodeSource
from hpcbench.monitor.sampler import Sampler
from hpcbench.monitor.server_metrics import (
    ServerMetricsSource,
    map_server_metrics,
    parse_server_metrics,
)
from hpcbench.proto import telemetry
from tests.support import fake_nvml
from tests.support.known_inputs import LLAMA_SERVER, NEW_VLLM, OLD_VLLM, VLLM_HISTOGRAMS


def series_of(reading, name):
    return {tuple(sorted(labels.items())): value for n, labels, value in reading.series
            if n == name}


def test_node_source_reads_every_core_memory_load_and_network():
    reading = NodeSource().read()
    cores = psutil.cpu_count()
    per_core = series_of(reading, "hpcbench_node_cpu_core_utilisation_ratio")
    assert len(per_core) == cores == reading.metrics["hpcbench_node_cpu_cores"]
    assert all(0.0 <= value <= 1.0 for value in per_core.values())
    assert 0.0 <= reading.metrics["hpcbench_node_cpu_utilisation_ratio"] <= 1.0
    memory = psutil.virtual_memory()
    assert reading.metrics["hpcbench_node_memory_total_bytes"] == memory.total
    assert 0 < reading.metrics["hpcbench_node_memory_used_bytes"] < memory.total
    assert "hpcbench_node_load1" in reading.metrics
    devices = {dict(labels)["device"] for labels in
               series_of(reading, "hpcbench_node_network_receive_bytes_total")}
    assert "lo" in devices
    names = set(reading.metrics) | {name for name, _, _ in reading.series}
    assert names <= set(METRICS), names - set(METRICS)


def test_gpu_source_reads_fake_nvml_in_base_units_keyed_by_uuid(monkeypatch):
    gpus = [fake_nvml.FakeGpu(uuid="GPU-aaa", util_percent=85, memory_used=10 * 2**30,
                              power_mw=250_500, energy_mj=7_000_000, sm_clock_mhz=1500),
            fake_nvml.FakeGpu(uuid="GPU-bbb", energy_mj=None, unsupported={"temperature"})]
    fake_nvml.install(monkeypatch, gpus)
    source, line = GpuSource.open()
    assert source is not None and "2 NVIDIA GPU(s) visible" in line and "GPU-bbb" in line
    reading = source.read()
    first = {name: value for name, labels, value in reading.series if labels["gpu"] == "GPU-aaa"}
    assert first == {
        "hpcbench_gpu_utilisation_ratio": 0.85,
        "hpcbench_gpu_memory_used_bytes": 10 * 2**30,
        "hpcbench_gpu_memory_total_bytes": 80 * 2**30,
        "hpcbench_gpu_power_watts": 250.5,
        "hpcbench_gpu_energy_joules_total": 7000.0,
        "hpcbench_gpu_temperature_celsius": 60,
        "hpcbench_gpu_sm_clock_hertz": 1.5e9,
        "hpcbench_gpu_memory_clock_hertz": 2619e6,
    }
    second = {name for name, labels, _ in reading.series if labels["gpu"] == "GPU-bbb"}
    assert "hpcbench_gpu_energy_joules_total" not in second  # unsupported: left out ...
    assert "hpcbench_gpu_temperature_celsius" not in second
    assert "hpcbench_gpu_power_watts" in second               # ... the rest still read
    assert {labels["index"] for _, labels, _ in reading.series} == {"0", "1"}
    source.close()


def test_no_nvml_library_or_no_gpu_gives_one_clear_line(monkeypatch):
    fake_nvml.install(monkeypatch, [], library_present=False)
    source, line = GpuSource.open()
    assert source is None and line.startswith(NO_GPU_LINE) and "Library Not Found" in line
    fake_nvml.install(monkeypatch, [])
    source, line = GpuSource.open()
    assert source is None and line == f"{NO_GPU_LINE} (NVML found 0 devices)"


def test_vllm_names_new_wins_over_old_and_label_sets_combine():
    assert map_server_metrics(NEW_VLLM) == {
        "hpcbench_server_kv_cache_usage_ratio": 0.5,      # mean of engines; old name ignored
        "hpcbench_server_requests_running": 7,
        "hpcbench_server_requests_waiting": 2,
        "hpcbench_server_prompt_tokens_total": 4321,
        "hpcbench_server_generation_tokens_total": 1234,
        "hpcbench_server_request_success_total": 15,
        "hpcbench_server_preemptions_total": 1,
    }
    assert map_server_metrics(OLD_VLLM) == {"hpcbench_server_kv_cache_usage_ratio": 0.5,
                                            "hpcbench_server_preemptions_total": 2}


def test_llama_server_names_map_to_the_same_hpcbench_names():
    """llama-server's requests processing / deferred are vLLM's running / waiting; its token
    and time counters and busy slots per decode keep their own names; what hpcbench does not
    use (n_tokens_max, lifetime throughput gauges) is left out."""
    assert map_server_metrics(LLAMA_SERVER) == {
        "hpcbench_server_requests_running": 2, "hpcbench_server_requests_waiting": 1,
        "hpcbench_server_prompt_tokens_total": 640,
        "hpcbench_server_generation_tokens_total": 160,
        "hpcbench_server_prompt_seconds_total": 0.8,
        "hpcbench_server_generation_seconds_total": 3.2,
        "hpcbench_server_decode_calls_total": 80,
        "hpcbench_server_busy_slots_per_decode": 2,
    }


def test_server_histograms_travel_as_buckets_and_expose_as_prometheus_histograms(metrics_http):
    """vLLM's histograms, summed over engines, reach the telemetry message as `_bucket`
    series (label le) beside `_sum` and `_count`; the message passes the contract, and the
    monitor's exposition turns them back into one Prometheus histogram per name."""
    metrics_http.body = (NEW_VLLM + VLLM_HISTOGRAMS).encode()
    source = ServerMetricsSource(f"http://127.0.0.1:{metrics_http.server_port}/metrics", 2.0)
    reading = source.read()
    ttft = "hpcbench_server_time_to_first_token_seconds"
    assert series_of(reading, f"{ttft}_bucket") == {
        (("le", "0.1"),): 3.0, (("le", "0.5"),): 4.0, (("le", "+Inf"),): 5.0}
    assert reading.metrics[f"{ttft}_sum"] == pytest.approx(1.55)
    assert reading.metrics[f"{ttft}_count"] == 5
    # the newer inter-token name wins over the older one
    assert reading.metrics["hpcbench_server_inter_token_latency_seconds_count"] == 6
    assert reading.metrics["hpcbench_server_prefix_cache_hits_total"] == 50
    message = telemetry.decode(telemetry.encode("r", "n1", 0, 1, reading.metrics,
                                                reading.series))
    collector = TelemetryCollector()
    collector.update(message)
    families = {family.name: family for family in collector.collect()}
    assert set(SERVER_HISTOGRAMS) <= set(families)
    family = families[ttft]
    assert family.type == "histogram"
    assert [(sample.name, sample.labels.get("le"), sample.value) for sample in family.samples] == [
        (f"{ttft}_bucket", "0.1", 3.0), (f"{ttft}_bucket", "0.5", 4.0),
        (f"{ttft}_bucket", "+Inf", 5.0), (f"{ttft}_sum", None, 1.55),
        (f"{ttft}_count", None, 5.0)]


def test_a_histogram_bucket_without_a_bound_is_skipped_not_the_scrape():
    text = VLLM_HISTOGRAMS.replace('le="0.1"', 'le="soon"')
    _, histograms = parse_server_metrics(text)
    assert set(histograms["hpcbench_server_time_to_first_token_seconds"].buckets) == {
        0.5, float("inf")}


class _TextHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def metrics_http():
    """A real HTTP server on 127.0.0.1 whose /metrics body the test sets."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TextHandler)
    server.body = b""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_server_source_scrapes_http_and_survives_garbage_and_outages(metrics_http, caplog):
    caplog.set_level(logging.INFO)
    url = f"http://127.0.0.1:{metrics_http.server_port}/metrics"
    source = ServerMetricsSource(url, timeout_s=2.0)
    metrics_http.body = OLD_VLLM.encode()
    reading = source.read()
    assert reading.metrics["hpcbench_server_up"] == 1.0
    assert reading.metrics["hpcbench_server_kv_cache_usage_ratio"] == 0.5
    metrics_http.body = b"this is { not prometheus"
    assert source.read().metrics == {"hpcbench_server_up": 0.0}
    assert source.read().metrics == {"hpcbench_server_up": 0.0}
    metrics_http.shutdown()
    metrics_http.server_close()
    assert source.read().metrics == {"hpcbench_server_up": 0.0}
    lines = [record.getMessage() for record in caplog.records if url in record.getMessage()]
    assert len(lines) == 2  # "answering", then one "not answering" for the whole outage


def test_sampler_messages_follow_the_telemetry_contract_and_csv_the_reference(tmp_path, monkeypatch):
    fake_nvml.install(monkeypatch, [fake_nvml.FakeGpu(uuid="GPU-a", util_percent=85,
                                                      memory_used=10240 * 2**20),
                                    fake_nvml.FakeGpu(uuid="GPU-b", util_percent=82)])
    gpus, _ = GpuSource.open()
    log = CsvLog(tmp_path / "metrics.csv")
    sampler = Sampler("run-1", "node7", 1.0, [NodeSource(), gpus])
    sampler.outputs.csv = log
    messages = [sampler.sample_once() for _ in range(3)]
    log.close()
    for seq, message in enumerate(messages):
        decoded = telemetry.decode(telemetry.pack(message))
        assert (decoded["run"], decoded["node"], decoded["seq"]) == ("run-1", "node7", seq)
        assert decoded["metrics"]["hpcbench_monitor_samples_total"] == seq + 1
    rows = list(csv.reader((tmp_path / "metrics.csv").open()))
    assert rows[0] == ["timestamp", "gpu0_util", "gpu0_mem_used", "gpu0_power_W", "gpu1_util",
                       "gpu1_mem_used", "gpu1_power_W", "cpu_percent", "ram_used_MB"]
    assert len(rows) == 4
    stamp, gpu0_util, gpu0_mem, gpu0_power, gpu1_util, _, _, cpu, ram = rows[1]
    assert stamp.startswith(str(__import__("datetime").date.today().year)) and "T" in stamp
    assert (gpu0_util, gpu0_mem, gpu1_util) == ("85.0", "10240.0", "82.0")
    assert float(gpu0_power) > 0
    assert 0.0 <= float(cpu) <= 100.0
    assert float(ram) == pytest.approx(messages[0]["metrics"]["hpcbench_node_memory_used_bytes"]
                                       / 2**20, rel=0.01)
    # a re-run of the session appends under the same header: earlier runs' rows are kept
    again = CsvLog(tmp_path / "metrics.csv")
    again.write(messages[0]["ts_ns"], messages[0]["metrics"], messages[0]["series"])
    again.close()
    after = list(csv.reader((tmp_path / "metrics.csv").open()))
    assert after[:4] == rows and len(after) == 5 and after[4][1:4] == rows[1][1:4]


@pytest.mark.parametrize("broken, field", [
    (lambda m: m.update(series=[["x", {"gpu": 1}, 1.0]]), "series item"),
    (lambda m: m.update(seq="3"), "seq"),
    (lambda m: m.pop("node"), "lacks"),
    (lambda m: m["metrics"].update(x="high"), "'x'"),
])
def test_malformed_telemetry_is_rejected_with_the_field_named(broken, field):
    message = telemetry.build("r", "n", 0, 1, {"a": 1.0}, [("b", {"gpu": "GPU-1"}, 2.0)])
    assert telemetry.decode(telemetry.pack(message)) == message
    broken(message)
    with pytest.raises(telemetry.TelemetryError, match=field):
        telemetry.decode(telemetry.pack(message))
    with pytest.raises(telemetry.TelemetryError, match="msgpack"):
        telemetry.decode(b"\xc1")


def _gpu_message(ts_s, node="n1", energy=None, power=None, gpu="GPU-1"):
    series = []
    if energy is not None:
        series.append(["hpcbench_gpu_energy_joules_total", {"gpu": gpu}, energy])
    if power is not None:
        series.append(["hpcbench_gpu_power_watts", {"gpu": gpu}, power])
    return telemetry.build("r", node, 0, int(ts_s * 1e9), {}, series)


def test_trial_energy_from_counters_interpolated_at_the_window_edges():
    messages = [_gpu_message(t, energy=1000 + 300 * t) for t in range(0, 11)]   # 300 W
    messages += [_gpu_message(t, node="n2", energy=50 + 100 * t) for t in range(0, 11)]  # 100 W
    result = trial_energy(messages, start_ns=int(2.5e9), end_ns=int(7.5e9), output_tokens=4000)
    assert result.joules == pytest.approx(5 * 300 + 5 * 100)
    assert result.tokens_per_joule == pytest.approx(4000 / 2000)
    assert result.per_gpu_joules[("n2", "GPU-1")] == pytest.approx(500)
    assert set(result.methods.values()) == {"energy counter"}
    assert result.covered_s == pytest.approx(5.0)


def test_trial_energy_integrates_power_without_a_counter_and_is_none_without_gpus():
    messages = [_gpu_message(t, power=200.0 + (100.0 if t >= 5 else 0.0)) for t in range(0, 11)]
    result = trial_energy(messages, start_ns=0, end_ns=int(10e9), output_tokens=100)
    assert result.joules == pytest.approx(4 * 200 + 250 + 5 * 300)  # trapezoid over the step
    assert result.methods == {("n1", "GPU-1"): "power integration"}
    cpu_only = [telemetry.build("r", "n1", 0, 0, {"hpcbench_node_load1": 1.0})]
    assert trial_energy(cpu_only, 0, 10, 5) is None
    with pytest.raises(ValueError, match="after start"):
        trial_energy(messages, 10, 10, 5)


class _BrokenSource:
    """A source whose hardware query fails every time (e.g. a driver gone mid-run)."""

    def read(self):
        raise OSError("device vanished")


def test_a_failing_source_is_reported_once_and_the_others_go_on(caplog):
    sampler = Sampler("r", "n", 1.0, [_BrokenSource(), NodeSource()])
    messages = [sampler.sample_once() for _ in range(3)]
    assert all("hpcbench_node_cpu_utilisation_ratio" in m["metrics"] for m in messages)
    assert caplog.text.count("_BrokenSource failed (OSError: device vanished)") == 1


def test_energy_meter_forgets_old_points_but_still_covers_the_next_window():
    meter = EnergyMeter()
    for t in range(0, 21):
        meter.observe(_gpu_message(t, energy=100.0 * t))   # 100 W
    meter.forget_before(int(10.5e9))
    assert meter.trial(int(10.5e9), int(20e9), output_tokens=950).joules == pytest.approx(950)
    assert meter.trial(int(10.5e9), int(20e9), 950).tokens_per_joule == pytest.approx(1.0)
