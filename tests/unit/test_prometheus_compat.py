"""The reference toolkit's Prometheus names (recipe monitoring.prometheus.compat_names,
`hpcbench-monitor --compat-names`): each one is an hpcbench reading in the unit the reference's
name states, with the reference's labels; off by default; a recipe that asks for them with
nothing exposed is E006. promtool and a real Prometheus scrape are in
tests/cluster/test_prometheus_compat_scrape.py."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.bus.compat import prefix
from hpcbench.coordinator.bus.prometheus import SessionCollector
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.session.lifecycle import closed_loop_streams
from hpcbench.monitor.compat import CHOICES, MIB, NAMES
from hpcbench.monitor.exposition import TelemetryCollector
from hpcbench.proto import bus, telemetry
from hpcbench.proto.trial import TrialConfig
from hpcbench.recipes.loader import recipe_from_dict
from hpcbench.recipes.schema import recipe_schema
from tests.support.known_inputs import sample_batch

GPU = {"gpu": "GPU-aaaa", "index": "1", "model": "NVIDIA H100"}
NODE_MESSAGE = telemetry.build(
    "run-r", "node07", 0, 1, {"hpcbench_node_cpu_utilisation_ratio": 0.375,
                              "hpcbench_node_memory_used_bytes": 12_288 * MIB,
                              "hpcbench_node_load1": 2.0},
    [("hpcbench_gpu_utilisation_ratio", GPU, 0.83),
     ("hpcbench_gpu_memory_used_bytes", GPU, 40_960 * MIB),
     ("hpcbench_gpu_power_watts", GPU, 300.0),
     ("hpcbench_node_cpu_core_utilisation_ratio", {"cpu": "0"}, 0.5),
     ("hpcbench_node_network_receive_bytes_total", {"device": "ib0"}, 5_000_000),
     ("hpcbench_node_network_transmit_bytes_total", {"device": "ib0"}, 7_000)])


def scrape(collector) -> dict[str, list]:
    """family name -> [(sample name, labels, value)] as Prometheus would parse it."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {family.name: [(s.name, s.labels, s.value) for s in family.samples]
            for family in text_string_to_metric_families(text)}


def test_node_names_are_hpcbench_readings_in_the_reference_units_and_labels():
    collector = TelemetryCollector("reference")
    collector.update(NODE_MESSAGE)
    found = scrape(collector)
    node = {"instance": "node07"}      # job: the scrape job's, or the push's grouping key's
    assert found["cpu_usage_percent"] == [("cpu_usage_percent", node, 37.5)]
    assert found["ram_used_megabytes"] == [("ram_used_megabytes", node, 12_288.0)]
    gpu = {**node, "gpu_id": "1"}      # the NVML index, as the CSV's gpuN columns
    assert found["gpu_utilization_percent"] == [("gpu_utilization_percent", gpu, 83.0)]
    assert found["gpu_memory_used_megabytes"] == [("gpu_memory_used_megabytes", gpu, 40_960.0)]
    assert found["network_rx_bytes"] == [("network_rx_bytes_total",
                                          {**node, "interface": "ib0"}, 5_000_000.0)]
    assert found["network_tx_bytes"][0][2] == 7_000.0
    # hpcbench's own names are still there, unchanged
    assert found["hpcbench_node_cpu_utilisation_ratio"][0][2] == 0.375
    assert found["hpcbench_gpu_power_watts"][0][1]["gpu"] == "GPU-aaaa"


def test_the_names_are_off_by_default():
    collector = TelemetryCollector()
    collector.update(NODE_MESSAGE)
    found = scrape(collector)
    assert not {name.name.removesuffix("_total") for name in NAMES} & set(found)
    assert "hpcbench_node_memory_used_bytes" in found


def test_a_push_leaves_instance_to_the_gateways_grouping_key():
    collector = TelemetryCollector("reference")
    collector.update(NODE_MESSAGE)
    found = scrape(collector.push_view())
    assert found["cpu_usage_percent"] == [("cpu_usage_percent", {}, 37.5)]
    assert found["gpu_utilization_percent"][0][1] == {"gpu_id": "1"}
    assert found["hpcbench_node_load1"][0][1] == {"node": "node07", "run": "run-r"}


def test_every_node_of_the_coordinators_endpoint_is_its_own_instance():
    collector = SessionCollector(compat="reference", service="vllm")
    for node, ratio in (("node01", 0.1), ("node02", 0.9)):
        collector.telemetry.update(telemetry.build(
            "run-r", node, 0, 1, {"hpcbench_node_cpu_utilisation_ratio": ratio}))
    found = scrape(collector)
    assert {labels["instance"]: value for _, labels, value in found["cpu_usage_percent"]} == \
        {"node01": 10.0, "node02": 90.0}


def bus_message(topic: str, seq: int, data: dict) -> dict:
    return {"topic": topic, "seq": seq, "data": data}


def event(name: bus.Event, seq: int, **fields) -> dict:
    return bus_message(bus.EVENT, seq, {"event": str(name), "session": "s", "state": "RUNNING",
                                        **fields})


def workload_values(collector: SessionCollector, service: str = "ollama") -> dict[str, float]:
    found = scrape(collector)
    return {name: samples[0][2] for name, samples in found.items()
            if name.startswith(prefix(service)) and len(samples) == 1}


def test_workload_names_follow_the_latest_trial_in_the_reference_units():
    aggregator = Aggregator(run_id="run-c", interval_s=1.0)
    aggregator.open_trial("trial-1")
    for seq in range(3):
        aggregator.ingest(sample_batch(seq, n=50, timeouts=2))
    snapshot = aggregator.snapshot()
    cumulative = snapshot["cumulative"]
    collector = SessionCollector(compat="reference", service="ollama")
    assert workload_values(collector) == {"ollama_workload_running": 0.0}   # nothing yet
    collector.update_bus_message(event(bus.Event.TRIAL_START, 0, trial="trial-1", index=0,
                                       params={}))
    collector.workload.streams("trial-1", 16)
    collector.update_bus_message(bus_message(bus.SNAPSHOT, 0, snapshot))
    values = workload_values(collector)
    assert values == {
        "ollama_workload_running": 1.0,
        "ollama_requests": 150.0,                   # counter family; sample ollama_requests_total
        "ollama_errors": 6.0,
        "ollama_request_latency_seconds": pytest.approx(0.18, rel=1e-3),   # mean E2E
        "ollama_throughput_rps": pytest.approx(150 / cumulative["seconds"]),
        "ollama_elapsed_seconds": pytest.approx(cumulative["seconds"]),
        "ollama_threads": 16.0,
    }
    samples = {name for family in scrape(collector).values() for name, labels, _ in family
               if name.startswith("ollama_")}
    assert {"ollama_requests_total", "ollama_errors_total"} <= samples
    # the trial ends: its summary's final figures stay, the workload is no longer running
    summary = {"trial": "trial-1", "overall": {**cumulative, "requests": 151, "error_total": 7}}
    collector.update_bus_message(bus_message(bus.SUMMARY, 0, summary))
    collector.update_bus_message(event(bus.Event.TRIAL_END, 1, trial="trial-1", passed=True,
                                       problems=[]))
    values = workload_values(collector)
    assert values["ollama_workload_running"] == 0.0 and "ollama_threads" not in values
    assert (values["ollama_requests"], values["ollama_errors"]) == (151.0, 7.0)
    # the bus replays the older start on a re-subscription: skipped, not running again
    collector.update_bus_message(event(bus.Event.TRIAL_START, 0, trial="trial-1", index=0,
                                       params={}))
    collector.update_bus_message(bus_message(bus.SNAPSHOT, 0, snapshot))
    values = workload_values(collector)
    assert values["ollama_workload_running"] == 0.0 and values["ollama_requests"] == 151.0
    # the next trial starts its counters from zero (a counter reset to Prometheus)
    collector.update_bus_message(event(bus.Event.TRIAL_START, 2, trial="trial-2", index=1,
                                       params={}))
    assert workload_values(collector) == {"ollama_workload_running": 1.0}


def test_an_open_loop_trial_has_no_threads_and_the_prefix_is_the_services_name():
    collector = SessionCollector(compat="reference", service="my-plugin")
    collector.update_bus_message(event(bus.Event.TRIAL_START, 0, trial="t", index=0, params={}))
    collector.workload.streams("t", None)
    assert workload_values(collector, "my-plugin") == {"my_plugin_workload_running": 1.0}
    assert SessionCollector().workload is None
    assert "ollama_workload_running" not in scrape(SessionCollector())


def trial_configs(workload: dict, executors: int, nodes: list[str]) -> list[TrialConfig]:
    from hpcbench.executor.config import with_executor_share

    placed = dict(enumerate(nodes))
    return [TrialConfig(run_id="r", trial_id="t", executor_index=index, executor_count=executors,
                        node=nodes[index], targets=["http://127.0.0.1:8000"],
                        workload=with_executor_share(workload, index, placed))
            for index in range(executors)]


@pytest.mark.parametrize("load, executors, nodes, streams", [
    ({"concurrency": 10}, 3, ["n1", "n2", "n3"], 10),              # a total, split 4+3+3
    ({"clients_per_node": 8}, 4, ["n1", "n1", "n2", "n2"], 16),    # per node, split per executor
    ({"load": {"pattern": "poisson", "rate": 5}}, 2, ["n1", "n2"], None),
])
def test_threads_are_the_closed_loop_streams_the_executors_run(load, executors, nodes, streams):
    workload = {"model": "m", "duration": 5, **load}
    assert closed_loop_streams(trial_configs(workload, executors, nodes)) == streams


RAW = {"scenario": "compat", "workload": {"service": "simulator", "model": "sim-llama",
                                          "duration": "5s"}}


def test_the_recipe_key_defaults_to_none_and_takes_exactly_the_monitors_choices():
    loaded = recipe_from_dict({**RAW, "monitoring": {"prometheus": {"enabled": True}}})
    assert loaded.data["monitoring"]["prometheus"]["compat_names"] == "none"
    prometheus = recipe_schema()["properties"]["monitoring"]["properties"]["prometheus"]
    assert tuple(prometheus["properties"]["compat_names"]["enum"]) == CHOICES


@pytest.mark.parametrize("monitoring", [
    {"prometheus": {"enabled": True, "compat_names": "reference"}},
    {"pushgateway": "http://gateway:9091", "prometheus": {"compat_names": "reference"}},
])
def test_reference_names_with_an_exposition_are_accepted(monitoring):
    recipe_from_dict({**RAW, "monitoring": monitoring})


@pytest.mark.parametrize("monitoring, words", [
    ({"prometheus": {"compat_names": "reference"}}, "set monitoring.prometheus.enabled: true"),
    ({"enabled": False, "pushgateway": "http://gateway:9091",
      "prometheus": {"compat_names": "reference"}}, "monitoring.pushgateway"),
    ({"prometheus": {"enabled": True, "compat_names": "refrence"}},
     'one of none, reference (did you mean "reference"?)'),
    ({"prometheus": {"enabled": True, "compat_names": True}}, "one of none, reference"),
])
def test_bad_compat_names_are_e006_naming_the_key_and_the_fix(monitoring, words):
    with pytest.raises(HpcbenchError) as caught:
        recipe_from_dict({**RAW, "monitoring": monitoring})
    rendered = caught.value.render()
    assert caught.value.code == "E006"
    assert "monitoring.prometheus.compat_names" in rendered and words in rendered, rendered
