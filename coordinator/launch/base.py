"""Where a session's components run: the backend interface the Session drives, and its registry.

A `Launcher` knows the nodes of a session (server contexts, monitor nodes, executor nodes) and
how to start a component on one of them; the `Session` owns the lifecycle and never asks which
backend it has. Every component is a child process of the coordinator, supervised by the
launcher's `Supervisor` (crash detection, logs, teardown). The backends, by name:

- `local` (launch/local.py): everything on this machine (`hpcbench run`);
- `srun` (launch/srun.py): each component an `srun --overlap` step on the Slurm node its
  placement gives it (run.sbatch).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Protocol

from hpcbench.coordinator.launch.supervisor import Supervisor
from hpcbench.servers.plugin import LaunchContext, LaunchSpec

LOCAL_NODE = "localhost"


class Launcher(Protocol):
    supervisor: Supervisor
    single_machine: bool    # every component runs on the coordinator's machine

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


def entry_point(script: str, module: str) -> list[str]:
    """argv prefix of a console script of this venv, or its `main()` through this interpreter."""
    sibling = Path(sys.executable).with_name(script)
    if sibling.exists():
        return [str(sibling)]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


LAUNCHERS: dict[str, str] = {
    "local": "hpcbench.coordinator.launch.local:LocalLauncher",
    "srun": "hpcbench.coordinator.launch.srun:SrunLauncher",
}


def make_launcher(kind: str, run_dir: Path, recipe, **options) -> Launcher:
    """The launcher `kind` for one session's run directory and recipe; `options` are the
    backend's own (local: host, executors; srun: placement, allocation)."""
    module_name, _, attr = LAUNCHERS[kind].partition(":")
    return getattr(importlib.import_module(module_name), attr)(run_dir, recipe, **options)
