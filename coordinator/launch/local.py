"""The local launcher (`hpcbench run`): every component a child process of this machine.

One server node (localhost) on the recipe's `service_config.port` or a free port, and
`executors` executor agents (default: the recipe's executors_per_node); monitors and executors
are this venv's programs.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from hpcbench.coordinator.launch.base import LOCAL_NODE, entry_point
from hpcbench.coordinator.launch.supervisor import Supervisor, free_port
from hpcbench.servers.plugin import LaunchContext, LaunchSpec


class LocalLauncher:
    """Every component as a child process of this machine; one server node (localhost) on
    `service_config.port` or a free port, `executors` agents (default: the recipe's
    executors_per_node)."""

    single_machine = True   # every component on this machine (ipc sockets can serve)

    def __init__(self, run_dir: Path, recipe, *, host: str, executors: int | None = None):
        self.supervisor = Supervisor(run_dir)
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.host = host
        clients = recipe.data["orchestration"]["node_allocation"]["clients"]
        self.executors = executors or clients["executors_per_node"]

    def service_contexts(self) -> list[LaunchContext]:
        from hpcbench.servers.registry import launch_contexts

        if self.recipe.data["endpoints"]:
            return []
        nodes = {"server_nodes": [LOCAL_NODE], "addresses": {LOCAL_NODE: self.host}}
        # the recipe's port when it gives one, else a free one (not the service's default:
        # two local runs, or a server already running on it, must not collide)
        port = self.recipe.data["servers"]["service_config"].get("port") or free_port(self.host)
        return [dataclasses.replace(context, port=port)
                for context in launch_contexts(self.recipe, nodes, self.run_dir)]

    def monitor_nodes(self) -> list[str]:
        return [LOCAL_NODE]

    def executor_nodes(self) -> list[str]:
        return [LOCAL_NODE] * self.executors

    def start_service(self, node: str, spec: LaunchSpec) -> int | None:
        return self.supervisor.start("service", spec.argv, spec.env).pid

    def prometheus_host(self, node: str) -> str:
        """Where a monitor's Prometheus endpoint (if any) listens: where the coordinator's
        sockets do (security.bind_address, else this machine's address)."""
        return self.recipe.data["security"]["bind_address"] or self.host

    def start_monitor(self, node: str, args: list[str], env: dict[str, str]) -> None:
        self.supervisor.start(f"monitor-{node}",
                           [*entry_point("hpcbench-monitor", "hpcbench.monitor.cli"), *args,
                            "--prometheus-host", self.prometheus_host(node)], env)

    def start_executor(self, agent_id: str, node: str, args: list[str],
                       env: dict[str, str]) -> None:
        self.supervisor.start(agent_id, [sys.executable, "-m", "hpcbench.executor.agent",
                                     "--agent-id", agent_id, *args],
                           env)
