"""Where a session's components run: the backend interface the Session drives.

A `Launcher` knows the nodes of a session (server contexts, monitor nodes, executor nodes) and
how to start a component on one of them; the `Session` owns the lifecycle and never asks which
backend it has. Every component is a child process of the coordinator, supervised by the
launcher's `LocalRuntime` (crash detection, logs, teardown):

- `ProcessLauncher` (here): everything on this machine (`hpcbench run`).
- `SrunLauncher` (coordinator/launch/sbatch_job.py): each component an `srun --overlap` step on the
  Slurm node its placement gives it (run.sbatch).
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Protocol

from hpcbench.coordinator.launch.supervisor import LocalRuntime, free_port
from hpcbench.servers.plugin import LaunchContext, LaunchSpec

LOCAL_NODE = "localhost"


class Launcher(Protocol):
    runtime: LocalRuntime

    def service_contexts(self) -> list[LaunchContext]:
        """One launch context per server node, head first (empty: the recipe's endpoints)."""

    def monitor_nodes(self) -> list[str]: ...

    def executor_nodes(self) -> list[str]:
        """The node of each executor agent, in executor index order."""

    def start_service(self, node: str, spec: LaunchSpec) -> int | None:
        """Start one server; return a pid a monitor on `node` can sample (None if remote)."""

    def start_monitor(self, node: str, args: list[str], env: dict[str, str]) -> None:
        """Start `hpcbench-monitor args` on `node` (`args` and `env` name its coordinator and
        session, as for executors; the launcher adds the address a Prometheus endpoint binds
        to, one Prometheus can reach)."""

    def start_executor(self, agent_id: str, node: str, args: list[str],
                       env: dict[str, str]) -> None:
        """Start the executor agent `agent_id` (`args` and `env` name its coordinator and
        session; the launcher adds the id to its command line)."""


class ProcessLauncher:
    """Every component as a child process of this machine; one server node (localhost) on a
    free port, `executors` agents (default: the recipe's executors_per_node)."""

    def __init__(self, run_dir: Path, recipe, *, host: str, executors: int | None = None):
        self.runtime = LocalRuntime(run_dir)
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
        return [dataclasses.replace(context, port=free_port(self.host))
                for context in launch_contexts(self.recipe, nodes, self.run_dir)]

    def monitor_nodes(self) -> list[str]:
        return [LOCAL_NODE]

    def executor_nodes(self) -> list[str]:
        return [LOCAL_NODE] * self.executors

    def start_service(self, node: str, spec: LaunchSpec) -> int | None:
        return self.runtime.start("service", spec.argv, spec.env).pid

    def start_monitor(self, node: str, args: list[str], env: dict[str, str]) -> None:
        # a Prometheus endpoint (if any) binds where the coordinator's sockets do
        bind = self.recipe.data["security"]["bind_address"] or self.host
        self.runtime.start(f"monitor-{node}",
                           [*entry_point("hpcbench-monitor", "hpcbench.monitor.cli"), *args,
                            "--prometheus-host", bind], env)

    def start_executor(self, agent_id: str, node: str, args: list[str],
                       env: dict[str, str]) -> None:
        self.runtime.start(agent_id, [sys.executable, "-m", "hpcbench.executor.agent",
                                     "--agent-id", agent_id, *args],
                           env)


def entry_point(script: str, module: str) -> list[str]:
    """argv prefix of a console script of this venv, or its `main()` through this interpreter."""
    sibling = Path(sys.executable).with_name(script)
    if sibling.exists():
        return [str(sibling)]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]
