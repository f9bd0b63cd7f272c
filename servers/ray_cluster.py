"""A Ray cluster across the server nodes, for vLLM's `--distributed-executor-backend ray`.

Rank 0 runs the head supervisor: `ray start --head --block`, then waits (ray_wait.py) until every
server node's raylet is alive, then runs `vllm serve`; when vLLM exits or the supervisor is
stopped, it stops both. Other ranks wait until the head's GCS port accepts connections and then
become `ray start --address HEAD --block`. Each node gives Ray and vLLM the same address
(`--node-ip-address` and VLLM_HOST_IP), and Ray's ports come from the Slurm job id so two jobs
sharing a node do not collide.

`python -m hpcbench.servers.ray_cluster head|worker ...` is the supervisor (it runs with the
hpcbench Python; the commands it starts are already wrapped for the runtime). What the head
supervisor starts dies with it, even when it is SIGKILLed (parent-death signal,
`common/process_group.py`); a worker becomes its `ray start` and keeps its own.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hpcbench.common.logs import configure_logging
from hpcbench.common.process_group import guarded

log = logging.getLogger(__name__)

PORT_SLOTS = 300  # distinct port blocks; 20000-22999 for services, 30000-59999 for workers


@dataclass(frozen=True)
class RayPorts:
    """Every port Ray opens on a node, so none is left to Ray's fixed defaults."""

    gcs: int
    node_manager: int
    object_manager: int
    ray_client_server: int
    dashboard_agent_grpc: int
    dashboard_agent_listen: int
    metrics_export: int
    runtime_env_agent: int
    min_worker: int
    max_worker: int


def ray_ports(job_id: str | None, overrides: dict | None = None) -> RayPorts:
    """Ports for a job: a block chosen by a hash of the job id (local runs: "local").

    `overrides` takes the recipe's `servers.service_config.distributed.ray` keys
    (`port: 6379` for the GCS, `object_manager_port: 8076`, ...), which win over the derived
    values.
    """
    slot = int(hashlib.sha256(str(job_id or "local").encode()).hexdigest()[:8], 16) % PORT_SLOTS
    base, workers = 20000 + slot * 10, 30000 + slot * 100
    ports = RayPorts(gcs=base, node_manager=base + 1, object_manager=base + 2,
                     ray_client_server=base + 3, dashboard_agent_grpc=base + 4,
                     dashboard_agent_listen=base + 5, metrics_export=base + 6,
                     runtime_env_agent=base + 7, min_worker=workers, max_worker=workers + 99)
    # `port` is the GCS port, as `ray start --port` calls it; `<name>_port` the others
    names = {key: "gcs" if key == "port" else key.removesuffix("_port")
             for key in (overrides or {}) if key == "port" or key.endswith("_port")}
    given = {names[key]: int(value) for key, value in (overrides or {}).items()
             if names.get(key) in asdict(ports)}
    return RayPorts(**{**asdict(ports), **given})


def ray_start_argv(ray_command: list[str], node_ip: str, ports: RayPorts,
                   head_address: str | None, ray_config: dict) -> list[str]:
    """`ray start ... --block` for the head (head_address None) or a worker.

    Each node gets its own temp dir (sockets, logs) named by GCS port and address, so two jobs
    on one node, or nodes sharing one /tmp, never use each other's sockets. The address is
    hashed: Ray nests socket files deep below this dir and Unix socket paths must stay under
    107 bytes, which a long address (IPv6, 10.213.0.11) would otherwise push past.
    """
    address_tag = hashlib.sha256(node_ip.encode()).hexdigest()[:8]
    temp_dir = f"{ray_config.get('temp_root', '/tmp')}/hbray-{ports.gcs}-{address_tag}"
    argv = [*ray_command, "start", "--block", "--node-ip-address", node_ip,
            "--temp-dir", temp_dir,
            "--node-manager-port", str(ports.node_manager),
            "--object-manager-port", str(ports.object_manager),
            "--dashboard-agent-grpc-port", str(ports.dashboard_agent_grpc),
            "--dashboard-agent-listen-port", str(ports.dashboard_agent_listen),
            "--metrics-export-port", str(ports.metrics_export),
            "--runtime-env-agent-port", str(ports.runtime_env_agent),
            "--min-worker-port", str(ports.min_worker),
            "--max-worker-port", str(ports.max_worker)]
    if head_address is None:
        argv += ["--head", "--port", str(ports.gcs),
                 "--ray-client-server-port", str(ports.ray_client_server)]
        if ray_config.get("dashboard_port"):
            argv += ["--include-dashboard", "true",
                     "--dashboard-port", str(ray_config["dashboard_port"])]
        else:
            argv += ["--include-dashboard", "false"]
    else:
        argv += ["--address", head_address]
    if ray_config.get("num_cpus_per_node") is not None:
        argv += ["--num-cpus", str(ray_config["num_cpus_per_node"])]
    if ray_config.get("num_gpus_per_node") is not None:
        argv += ["--num-gpus", str(ray_config["num_gpus_per_node"])]
    return argv


def wait_argv(python_command: list[str], head_address: str, nodes: int,
              timeout_s: float) -> list[str]:
    """The cluster-size wait, run with the Python that has Ray (see ray_wait.py)."""
    source = (Path(__file__).with_name("ray_wait.py")).read_text()
    return [*python_command, "-c", source, head_address, str(nodes), str(timeout_s)]


def supervisor_argv(role: str, **options: object) -> list[str]:
    """`python -m hpcbench.servers.ray_cluster ROLE --option JSON ...` (argv, no shell)."""
    argv = [sys.executable, "-m", "hpcbench.servers.ray_cluster", role]
    for key, value in options.items():
        argv += ["--" + key.replace("_", "-"),
                 value if isinstance(value, str) else json.dumps(value)]
    return argv


# --- the supervisor process -------------------------------------------------------------------

def _stop(process: subprocess.Popen | None, grace_s: float = 20.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for_tcp(address: str, timeout_s: float) -> bool:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1.0).close()
            return True
        except OSError:
            pause.wait(0.2)
    return False


def run_head(ray_start: list[str], wait: list[str], serve: list[str]) -> int:
    """Start Ray's head, wait for every node, run the server; stop all on exit or signal."""
    stopping = threading.Event()
    children: dict[str, subprocess.Popen | None] = {"ray": None, "wait": None, "serve": None}

    def on_signal(signum, _frame):
        stopping.set()
        for child in children.values():
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ray = children["ray"] = subprocess.Popen(guarded(ray_start))
        waiter = children["wait"] = subprocess.Popen(guarded(wait))
        pause = threading.Event()
        while waiter.poll() is None and ray.poll() is None and not stopping.is_set():
            pause.wait(0.2)
        if ray.poll() is not None:
            log.error("error E001: ray head exited with code %s before the cluster formed; fix: "
                      "see its output above (a Ray port in use?)", ray.returncode)
            return 11
        if stopping.is_set():
            return 128 + signal.SIGTERM
        if waiter.wait() != 0:
            return 11
        children["serve"] = subprocess.Popen(guarded(serve))
        return children["serve"].wait()
    finally:
        for name in ("serve", "wait", "ray"):
            _stop(children[name])


def run_worker(head_address: str, timeout_s: float, ray_start: list[str]) -> int:
    """Wait for the head's GCS port, then become the worker's `ray start --block`."""
    if not _wait_for_tcp(head_address, timeout_s):
        log.error("error E001: Ray head %s not reachable after %gs; fix: check the head node's "
                  "server log and that the port is open between nodes", head_address, timeout_s)
        return 11
    os.execvp(ray_start[0], ray_start)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    configure_logging("hpcbench ray")
    parser = argparse.ArgumentParser(prog="python -m hpcbench.servers.ray_cluster")
    roles = parser.add_subparsers(dest="role", required=True)
    head = roles.add_parser("head")
    head.add_argument("--ray-start", required=True, help="JSON argv of ray start --head")
    head.add_argument("--wait", required=True, help="JSON argv of the node-count wait")
    head.add_argument("--serve", required=True, help="JSON argv of the server")
    worker = roles.add_parser("worker")
    worker.add_argument("--head-address", required=True)
    worker.add_argument("--timeout", required=True, type=float)
    worker.add_argument("--ray-start", required=True, help="JSON argv of ray start --address")
    args = parser.parse_args(argv)
    if args.role == "head":
        return run_head(json.loads(args.ray_start), json.loads(args.wait), json.loads(args.serve))
    return run_worker(args.head_address, args.timeout, json.loads(args.ray_start))


if __name__ == "__main__":
    sys.exit(main())
