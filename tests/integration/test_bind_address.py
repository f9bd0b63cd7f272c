"""Where the coordinator's sockets and the monitors' Prometheus endpoints listen: loopback by
default on one machine, the recipe's `security.bind_address` when it sets one, while peers are
always told an address they can dial.

The runs are real `hpcbench run` processes; their listening sockets are read from the kernel
(psutil) while the trial runs.
"""
from __future__ import annotations

import json
import stat
import urllib.request
from pathlib import Path

import psutil
import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.recipes import recipe_from_dict
from tests.support.fault_runs import MONITOR, started_runs, wait_second_trial_measuring, write_recipe
from tests.support.ports import free_port
from tests.support.waiting import wait_until


@pytest.fixture
def runs():
    with started_runs() as start:
        yield start


def served_requests(port: int) -> float:
    """hpcbench_requests_total summed over the session endpoint's series (0 before any)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("hpcbench_requests_total"))


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
    session_dir = run.results / "faults" / "bind"
    record = json.loads((session_dir / "coordinator.json").read_text())
    sockets = listening(run.process.pid)
    # the session's endpoint follows its bus, whether that is ipc or CURVE
    wait_until(lambda: served_requests(coordinator_port) > 0, timeout=30,
               what="requests on the session's Prometheus endpoint")
    # the monitor's Prometheus endpoint goes where the coordinator's sockets go
    assert listening(run.component_pid(*MONITOR)) == {monitor_port: listens_on}
    assert sockets[coordinator_port] == listens_on
    control_port = int(record["control"].rsplit(":", 1)[1])
    # what peers are told is an address to dial, never 0.0.0.0
    assert record["control"] == f"127.0.0.1:{control_port}"
    if bind is None:
        # one machine: control and Prometheus on the loopback; samples and bus are socket
        # files in a directory only this user can enter, so no other user can push or listen
        assert sockets == {control_port: "127.0.0.1", coordinator_port: "127.0.0.1"}, sockets
        assert record["bus"].startswith("ipc://") and record["tls"] is False
        socket_dir = Path(record["bus"].removeprefix("ipc://")).parent
        assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    else:
        # reachable from other machines: samples and bus on CURVE, the control port on TLS
        assert len(sockets) == 4 and set(sockets.values()) == {listens_on}, sockets
        bus_port = int(record["bus"].rsplit(":", 1)[1])
        assert record["bus"] == f"tcp://127.0.0.1:{bus_port}" and bus_port in sockets
        assert record["tls"] is True and (session_dir / "curve.keys").exists()
    assert run.wait(120) == 0, run.output            # executors and monitor reached it
    trial = next(path for path in session_dir.iterdir() if (path / "summary.json").exists())
    protection = json.loads((trial / "summary.json").read_text())["integrity"]["protection"]
    assert protection == {"data_plane": "ipc" if bind is None else "curve",
                          "control_plane": "loopback" if bind is None else "tls",
                          "control_token": "required"}


@pytest.mark.parametrize("address", ["node1", "10.0.0", "::1", ""])
def test_a_bind_address_that_is_not_an_ipv4_literal_is_refused(address):
    with pytest.raises(HpcbenchError) as caught:
        recipe_from_dict({"scenario": "b", "security": {"bind_address": address},
                          "workload": {"service": "simulator", "model": "m"}})
    assert caught.value.code == "E006"
    assert "security.bind_address" in caught.value.render()
