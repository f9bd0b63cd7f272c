"""The recipe's monitoring.prometheus.monitor_port and how monitors get it: checked with the
recipe, and every monitor a launcher starts binds where Prometheus can reach it (locally the
coordinator's host, on Slurm its node's cluster address). A real run is in
test_prometheus_run.py."""
from __future__ import annotations

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.launch import slurm
from hpcbench.coordinator.launch.local import LocalLauncher
from hpcbench.coordinator.launch.srun import SrunLauncher
from hpcbench.recipes.loader import recipe_from_dict

RAW = {"scenario": "prom", "workload": {"service": "simulator", "model": "sim-llama",
                                        "duration": "5s"}}


def recipe(prometheus: dict, **top):
    return recipe_from_dict({**RAW, **top, "monitoring": {"prometheus": prometheus}})


def test_monitor_port_defaults_next_to_the_coordinators_and_0_turns_it_off():
    assert recipe({"enabled": True}).data["monitoring"]["prometheus"] == \
        {"enabled": True, "port": 9400, "monitor_port": 9401, "compat_names": "none"}
    assert recipe({"enabled": True, "monitor_port": 0}).data["monitoring"]["prometheus"][
        "monitor_port"] == 0


@pytest.mark.parametrize("prometheus, words", [
    ({"enabled": True, "monitor_port": 70000}, "0 (monitors serve no endpoint) or a TCP port"),
    ({"enabled": True, "monitor_port": "9401"}, "0 (monitors serve no endpoint) or a TCP port"),
    ({"enabled": True, "port": 9500, "monitor_port": 9500}, "other than monitoring.prometheus.port"),
    ({"enabled": True, "port": 9401}, "other than monitoring.prometheus.port (9401)"),
])
def test_bad_monitor_ports_name_the_key(prometheus, words):
    with pytest.raises(HpcbenchError) as caught:
        recipe(prometheus)
    rendered = caught.value.render()
    assert caught.value.code == "E006"
    assert "monitoring.prometheus.monitor_port" in rendered and words in rendered, rendered


def test_equal_ports_are_fine_while_prometheus_is_off():
    recipe({"enabled": False, "port": 9500, "monitor_port": 9500})


class Recorder:
    """Stands in for Supervisor: records what would be started."""

    def __init__(self):
        self.started: list[tuple[str, list[str]]] = []

    def start(self, name, argv, env=None):
        self.started.append((name, argv))


def test_a_local_monitor_binds_its_endpoint_to_the_coordinators_host(tmp_path):
    launcher = LocalLauncher(tmp_path, recipe({"enabled": True}), host="127.0.0.1")
    launcher.supervisor = Recorder()
    launcher.start_monitor("localhost", ["--prometheus-port", "9401"], {})
    (name, argv), = launcher.supervisor.started
    assert name == "monitor-localhost"
    assert argv[-4:] == ["--prometheus-port", "9401", "--prometheus-host", "127.0.0.1"]


@pytest.mark.parametrize("bind", [None, "0.0.0.0"])
def test_each_slurm_monitor_binds_its_endpoint_to_its_nodes_address(tmp_path, bind):
    raw = {**RAW, "partition": "debug", "account": "p1", "runtime": "process",
           "orchestration": {"mode": "slurm", "total_nodes": 3},
           "monitoring": {"prometheus": {"enabled": True}},
           "security": {"bind_address": bind}}
    allocation = slurm.Allocation("42", ("n1", "n2", "n3"),
                                  {"n1": "10.0.0.1", "n2": "10.0.0.2", "n3": "10.0.0.3"})
    loaded = recipe_from_dict(raw)
    launcher = SrunLauncher(tmp_path, loaded, allocation=allocation,
                            placement=slurm.place_on_allocation(loaded, allocation))
    launcher.supervisor = Recorder()
    for node in launcher.monitor_nodes():
        launcher.start_monitor(node, ["--prometheus-port", "9401"], {})
    for (name, argv), node in zip(launcher.supervisor.started, ("n1", "n2", "n3")):
        assert name == f"monitor-{node}" and f"--nodelist={node}" in argv
        assert argv[-4:] == ["--prometheus-port", "9401", "--prometheus-host",
                             bind or allocation.addresses[node]]
