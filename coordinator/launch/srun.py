"""The srun launcher (run.sbatch): every component an `srun --overlap` step on its Slurm node.

The placement (launch/slurm.py) gives each role its nodes; each step runs the component in the
recipe's runtime: this venv's program (`process`), or its image under `apptainer exec` or
`podman run` (servers/runtime.py). Images are the recipe's `artifacts.<role>`, or those
`make images` builds for hpcbench's own components.
"""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.launch.slurm import Allocation, role_resources
from hpcbench.coordinator.launch.supervisor import Supervisor

log = logging.getLogger(__name__)


def srun_step(node: str, name: str, argv: list[str],
              resources: list[str] | tuple[str, ...] = ()) -> list[str]:
    """argv running `argv` as one task on `node`, sharing the job's CPUs with other steps;
    `resources` are the role's `--cpus-per-task`/`--mem` (slurm.role_resources)."""
    return ["srun", "--overlap", "--nodes=1", "--ntasks=1", *resources, f"--nodelist={node}",
            f"--job-name={name}", "--kill-on-bad-exit=1", "--export=ALL", *argv]


def component_image(role: str, data: dict) -> tuple[str, str | None]:
    """(image path, remote to pull from) for `role` ("service", "monitor", "executor"):
    `artifacts.service` for the service; for hpcbench's own components `artifacts.<role>`,
    else `artifacts.python`, else the image `make images` builds (runtime.hpcbench_image)."""
    from hpcbench.servers.runtime import hpcbench_image, service_image

    artifacts, runtime = data.get("artifacts") or {}, data.get("runtime", "apptainer")
    if role != "service":
        image, remote, _ = hpcbench_image(role, artifacts, runtime)
        return image, remote
    return (service_image(artifacts, runtime),
            (artifacts.get("service") or {}).get("remote"))


def ensure_image(image: str, remote: str | None, pull_allowed: bool = True,
                 runtime: str = "apptainer") -> None:
    """Pull a missing image from its `remote` when the recipe allows pulls (artifacts.pull);
    E003 when it is missing and cannot or may not be pulled."""
    if runtime == "podman":
        return ensure_podman_image(image)
    if Path(image).exists():
        return
    if remote and not pull_allowed:
        raise HpcbenchError("E003", f"container image {image} does not exist and "
                            f"artifacts.pull is false",
                            (f"fix: pull it beforehand (e.g. on a login node): apptainer pull "
                             f"{image} {remote}; or set artifacts.pull: true",))
    if not remote:
        raise HpcbenchError("E003", f"container image {image} does not exist",
                            ("fix: run `make images` for hpcbench's images, or set the "
                             "artifact's `remote` (e.g. docker://ollama/ollama:latest) so it "
                             "is pulled",))
    try:
        pulled = subprocess.run(["apptainer", "pull", image, remote], capture_output=True,
                                text=True)
    except OSError as error:
        raise HpcbenchError("E003", f"cannot run `apptainer pull {image} {remote}`: {error}",
                            ("fix: install Apptainer or `module load Apptainer` (the recipe's "
                             "modules), or pull the image beforehand",)) from error
    if pulled.returncode != 0:
        raise HpcbenchError("E003", f"`apptainer pull {image} {remote}` failed",
                            tuple(pulled.stderr.strip().splitlines()[-3:]))


def ensure_podman_image(image: str) -> None:
    """E003 unless podman has `image` (an OCI archive file or an image in its storage): no
    registry is assumed reachable from the nodes, so nothing is pulled."""
    from hpcbench.servers.runtime import OCI_ARCHIVE

    fix = ("fix: run `make images` (it builds localhost/hpcbench-<component>:<version> with "
           "podman), or `podman load -i ARCHIVE` on every node, or name an OCI archive "
           "(.tar) as the artifact's path",)
    if image.startswith(OCI_ARCHIVE):
        if not Path(image.removeprefix(OCI_ARCHIVE)).is_file():
            raise HpcbenchError("E003", f"container image {image} does not exist", fix)
        return
    try:
        found = subprocess.run(["podman", "image", "exists", image], capture_output=True,
                               timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as error:
        raise HpcbenchError("E003", f"cannot run `podman image exists {image}`: {error}",
                            ("fix: install podman (apt-get install podman runc) or use "
                             "runtime: process",)) from error
    if not found:
        raise HpcbenchError("E003", f"podman has no image {image}", fix)


def check_hpcbench_image(image: str, runtime: str = "apptainer") -> None:
    """E003 unless `hpcbench --version` runs in the image: an image that runs executors and
    monitors must have hpcbench installed (a plain Python image, as the reference's
    `artifacts.python`, has not)."""
    from hpcbench.servers.runtime import ContainerRun, container_argv

    argv = container_argv(runtime, ContainerRun(image=image, argv=("hpcbench", "--version")))
    try:
        checked = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise HpcbenchError("E003", f"cannot run `{' '.join(argv)}`: {error}",
                            (f"fix: install {runtime} (`module load Apptainer` for the recipe's "
                             "modules, apt-get install podman runc), or use runtime: process",)
                            ) from error
    if checked.returncode != 0:
        raise HpcbenchError(
            "E003", f"image {image} cannot run hpcbench's executors and monitors: "
                    f"`hpcbench --version` failed in it",
            (*checked.stderr.strip().splitlines()[-2:],
             "fix: `make images` builds hpcbench's executor, monitor and base images (Python "
             "with hpcbench); point artifacts.python.path (or artifacts.executor / "
             "artifacts.monitor) at one of them, or leave them out to use those of "
             "`make images`"))


def component_argv(component: str, args: list[str], data: dict, run_dir: Path,
                   gpus: bool = False) -> list[str]:
    """argv of an hpcbench component (`monitor`, `executor`) in the recipe's runtime: the
    venv's console script for `process`, else its image in the container runtime (the
    recipe's binds plus the run directory)."""
    from hpcbench.servers.runtime import wrap

    command = f"hpcbench-{component}"
    if data["runtime"] == "process":
        return [str(Path(sys.executable).with_name(command)), *args]
    image, _ = component_image(component, data)
    return wrap([command, *args], data["runtime"], {}, [*data["binds"], str(run_dir)],
                gpus=gpus, image=image)


def remove_containers(allocation: Allocation) -> None:
    """Remove the podman containers of this job on every node: those whose `podman run` was
    killed before it could remove them (a step SIGKILLed leaves its container to conmon).
    Logged, never raised: teardown goes on. The same command suits a Slurm epilog."""
    from hpcbench.servers.runtime import cleanup_argv

    nodes = allocation.nodes
    argv = ["srun", "--overlap", f"--nodes={len(nodes)}", f"--ntasks={len(nodes)}",
            "--ntasks-per-node=1", f"--nodelist={','.join(nodes)}",
            "--job-name=hpcbench-cleanup", *cleanup_argv(allocation.job_id)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("could not remove the job's podman containers: %s", error)
        return
    if done.returncode != 0:  # e.g. after scancel: Slurm starts no new step in the job
        log.warning("could not remove leftover podman containers of the job (a Slurm epilog "
                    "running `%s` does it on every node): %s",
                    " ".join(cleanup_argv("$SLURM_JOB_ID")), done.stderr.strip()[-300:])


class SrunLauncher:
    """The session's launcher under Slurm (launch/base.py's interface)."""

    single_machine = False   # components run on several nodes: the sockets must be tcp

    def __init__(self, run_dir: Path, recipe, *, placement, allocation: Allocation):
        self.supervisor = Supervisor(run_dir)
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.placement = placement
        self.allocation = allocation

    def service_contexts(self) -> list:
        """A server per server node (rank 0 = head); none when the recipe gives endpoints."""
        from hpcbench.servers.registry import launch_contexts

        if not self.placement.servers:
            return []
        nodes = {"server_nodes": list(self.placement.server_nodes),
                 "addresses": dict(self.allocation.addresses)}
        return launch_contexts(self.recipe, nodes, self.run_dir, self.allocation.job_id)

    def monitor_nodes(self) -> list[str]:
        return list(self.placement.monitors)

    def executor_nodes(self) -> list[str]:
        return [slot.node for slot in self.placement.executors]

    def start_service(self, node: str, spec) -> int | None:
        self._step(f"service-{node}", node, spec.argv, spec.env, role="servers")
        return None   # srun's pid is not the server's: the monitor cannot sample it

    def prometheus_host(self, node: str) -> str:
        """Where a monitor's Prometheus endpoint (if any) listens: the node's cluster address,
        as the coordinator's sockets do, or the recipe's security.bind_address."""
        return self.recipe.data["security"]["bind_address"] or self.allocation.addresses[node]

    def start_monitor(self, node: str, args: list[str], env: dict[str, str]) -> None:
        argv = [*args, "--prometheus-host", self.prometheus_host(node)]
        self._step(f"monitor-{node}", node,
                   component_argv("monitor", argv, self.recipe.data, self.run_dir, gpus=True),
                   env, role="monitors")

    def start_executor(self, agent_id: str, node: str, args: list[str],
                       env: dict[str, str]) -> None:
        self._step(agent_id, node, component_argv(
            "executor", [*args, "--executor-id", agent_id], self.recipe.data, self.run_dir), env,
            role="clients")

    def _step(self, name: str, node: str, argv: list[str], env: dict | None = None, *,
              role: str) -> None:
        resources = role_resources(self.recipe.data, role)
        self.supervisor.start(name, srun_step(node, name, argv, resources), env)
