"""Where the coordinator's sockets and the monitors' Prometheus endpoints listen: loopback by
default on one machine, the recipe's `security.bind_address` when it sets one, while peers are
always told an address they can dial.

The runs are real `hpcbench run` processes; their listening sockets are read from the kernel
(psutil) while the trial runs.
"""
from __future__ import annotations

import json

import psutil
import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.recipes import recipe_from_dict
from tests.support.fault_runs import MONITOR, started_runs, wait_second_trial_measuring, write_recipe
from tests.support.ports import free_port


@pytest.fixture
def runs():
    with started_runs() as start:
        yield start


def listening(pid: int) -> dict[int, str]:
    """Port -> IPv4 address of every TCP socket the process listens on. gRPC listens on IPv6
    sockets: `::ffff:127.0.0.1` is the loopback, `::` (dual stack) every interface."""
    return {conn.laddr.port: {"::": "0.0.0.0"}.get(conn.laddr.ip,
                                                   conn.laddr.ip.removeprefix("::ffff:"))
            for conn in psutil.Process(pid).net_connections(kind="tcp")
            if conn.status == psutil.CONN_LISTEN}


@pytest.mark.parametrize("bind, listens_on", [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_sockets_listen_where_the_recipe_says_and_peers_dial_loopback(tmp_path, runs, bind,
                                                                     listens_on):
    coordinator_port, monitor_port = free_port(), free_port()
    recipe = write_recipe(tmp_path, security={"bind_address": bind}, duration="4s",
                          monitoring={"interval": "500ms", "prometheus": {
                              "enabled": True, "port": coordinator_port,
                              "monitor_port": monitor_port}})
    run = runs(recipe, tmp_path / "results", "bind")
    wait_second_trial_measuring(run)
    record = json.loads((run.results / "faults" / "bind" / "coordinator.json").read_text())
    sockets = listening(run.process.pid)
    # control, samples, bus and Prometheus: all on the loopback by default, so nothing of the
    # coordinator's is reachable from another machine; all on the recipe's address if set
    assert len(sockets) == 4 and set(sockets.values()) == {listens_on}, sockets
    assert sockets[coordinator_port] == listens_on
    # the monitor's Prometheus endpoint goes where the coordinator's sockets go
    assert listening(run.component_pid(*MONITOR)) == {monitor_port: listens_on}
    advertised = {"control": record["control"], "bus": record["bus"]}
    assert {int(address.rsplit(":", 1)[1]) for address in advertised.values()} < set(sockets)
    # what peers are told is an address to dial, never 0.0.0.0
    assert advertised == {"control": f"127.0.0.1:{advertised['control'].rsplit(':', 1)[1]}",
                          "bus": f"tcp://127.0.0.1:{advertised['bus'].rsplit(':', 1)[1]}"}
    assert run.wait(120) == 0, run.output            # executors and monitor reached it


@pytest.mark.parametrize("address", ["node1", "10.0.0", "::1", ""])
def test_a_bind_address_that_is_not_an_ipv4_literal_is_refused(address):
    with pytest.raises(HpcbenchError) as caught:
        recipe_from_dict({"scenario": "b", "security": {"bind_address": address},
                          "workload": {"service": "simulator", "model": "m"}})
    assert caught.value.code == "E006"
    assert "security.bind_address" in caught.value.render()
