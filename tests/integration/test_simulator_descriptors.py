"""A simulator process under a low descriptor limit (the HTTP/1.1 framing details are checked in
process by tests/unit/test_simulator_protocol.py)."""
import json
import resource
import socket
import subprocess
import sys
import urllib.request

from tests.support.waiting import wait_until


def test_out_of_descriptors_the_simulator_waits_then_serves_again(tmp_path):
    """A simulator that cannot accept (its descriptor limit reached) says so once, does not
    spin on its ever-readable listening socket, and serves again once descriptors are free."""
    port_file, log_path = tmp_path / "port", tmp_path / "sim.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hpcbench.coordinator.cli.main", "sim", "--port", "0",
             "--port-file", str(port_file)], stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)))
    clients = []
    try:
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), timeout=30,
                   what="the simulator's port file")
        port = int(port_file.read_text())
        for _ in range(80):      # more than it has descriptors for: the rest wait in the backlog
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        wait_until(lambda: b"cannot accept connections" in log_path.read_bytes(), timeout=30,
                   what="the simulator to report it cannot accept")
        for client in clients:
            client.close()
        clients.clear()
        answer = wait_until(lambda: _models(port), timeout=30, what="a request served again")
        assert answer["data"][0]["id"] == "sim-model"
        assert process.poll() is None
    finally:
        for client in clients:
            client.close()
        process.kill()
        process.wait()
    assert log_path.read_bytes().count(b"cannot accept connections") == 1


def _models(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as reply:
            return json.loads(reply.read())
    except OSError:
        return None
