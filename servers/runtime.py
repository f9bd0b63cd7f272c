"""Runtimes: how a command runs on a node. `process` runs it as is; `apptainer` and `podman` run
it in a container image.

Both container runtimes build their command line from one description, `ContainerRun`: the
image, the command, the binds (the run directory among them), and whether GPUs are wanted. What
the command gets is the same in both: the host's network, process and IPC namespaces (Apptainer
shares them by default, podman with `--network host --pid host --ipc host`; /dev/shm matters to
vLLM), the caller's environment (Apptainer passes it by default, podman with `--env-host`), the
binds, and the signals sent to the runtime (Apptainer execs the command; podman proxies them to
it; in the host's PID namespace it is not a PID 1 that ignores them). So the podman path that runs here tests
everything but the final argv of the Apptainer path.

Podman specifics (see docs/containers.md): each container is named, stopped by name when its
step is signalled (STOP_ON_SIGNAL), labelled with the session (`org.hpcbench.session`) so
teardown removes what a killed step left (`cleanup_argv`), and gets
resource limits no higher than the caller's: a container cannot raise a hard limit without
CAP_SYS_RESOURCE, and podman's defaults (nofile 1048576) would fail with "operation not
permitted" on such nodes.
"""
from __future__ import annotations

import os
import resource
import uuid
from dataclasses import dataclass
from pathlib import Path

from hpcbench.common.errors import config_error

RUNTIMES = ("process", "apptainer", "podman")
CONTAINER_RUNTIMES = ("apptainer", "podman")
SESSION_LABEL = "org.hpcbench.session"
OCI_ARCHIVE = "oci-archive:"
# where podman finds NVIDIA GPUs (Container Device Interface specs, `nvidia-ctk cdi generate`)
CDI_SPECS = ("/etc/cdi/nvidia.yaml", "/var/run/cdi/nvidia.yaml")


@dataclass(frozen=True)
class ContainerRun:
    """One command in one image, as every container runtime runs it."""

    image: str
    argv: tuple[str, ...]
    binds: tuple[str, ...] = ()     # Apptainer's SRC[:DEST[:ro|rw]]
    gpus: bool = False              # NVIDIA GPUs and their libraries, where the node has them
    session: str | None = None      # the session (Slurm job) the container belongs to
    env: tuple[str, ...] = ()       # NAME=VALUE set on top of the caller's environment
    workdir: str | None = None      # the working directory inside, if not the image's
    stop_grace_s: int = 10          # podman: SIGTERM to SIGKILL when the step is stopped


def apptainer_argv(run: ContainerRun) -> list[str]:
    argv = ["apptainer", "exec"]
    if run.gpus:
        argv.append("--nv")
    for bind in run.binds:
        argv += ["--bind", bind]
    for setting in run.env:
        argv += ["--env", setting]
    if run.workdir:
        argv += ["--pwd", run.workdir]
    return [*argv, run.image, *run.argv]


# `podman run` under a shell that stops the container by name when the step is signalled or
# the client ends: the container is conmon's child, not the client's, so a signal the client
# does not pass on, or a client killed first, would otherwise leave it running. USR1 (Slurm's
# warning before the time limit) is passed on.
STOP_ON_SIGNAL = """name=$1; grace=$2; shift 2
stop() { podman stop --ignore --time "$grace" "$name" >/dev/null 2>&1; }
trap stop TERM INT HUP
trap 'podman kill --signal USR1 "$name" >/dev/null 2>&1' USR1
"$@" &
client=$!
wait "$client"; status=$?
while kill -0 "$client" 2>/dev/null; do wait "$client"; status=$?; done
stop
exit $status"""


def podman_argv(run: ContainerRun) -> list[str]:
    name = f"hpcbench-{run.session or 'local'}-{uuid.uuid4().hex[:12]}"
    argv = ["sh", "-c", STOP_ON_SIGNAL, "podman-step", name, str(run.stop_grace_s),
            "podman", "run", "--rm", "--name", name, "--network", "host", "--pid", "host",
            "--ipc", "host", "--env-host", *limit_flags()]
    if run.session:
        argv += ["--label", f"{SESSION_LABEL}={run.session}"]
    if run.gpus and any(Path(spec).exists() for spec in CDI_SPECS):
        argv += ["--device", "nvidia.com/gpu=all"]
    for bind in run.binds:
        argv += ["--volume", podman_volume(bind)]
    for setting in run.env:
        argv += ["--env", setting]
    if run.workdir:
        argv += ["--workdir", run.workdir]
    # the command replaces the image's entrypoint, as `apptainer exec` bypasses %runscript
    return [*argv, "--entrypoint", run.argv[0], run.image, *run.argv[1:]]


def podman_volume(bind: str) -> str:
    """Apptainer's SRC[:DEST[:ro|rw]] as podman's SRC:DEST[:ro|rw] (DEST defaults to SRC)."""
    parts = bind.split(":")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in ("ro", "rw")):
        parts.insert(1, parts[0])
    return ":".join(parts)


def limit_flags() -> list[str]:
    """`--ulimit` for open files and processes: the caller's own limits, and never more
    processes than the kernel has pids (podman lowers its own limit to pid_max, and a container
    asking for more than its runtime holds fails with "operation not permitted")."""
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = None
    flags = []
    for name, limit, cap in (("nofile", resource.RLIMIT_NOFILE, None),
                             ("nproc", resource.RLIMIT_NPROC, pid_max)):
        soft, hard = (None if value == resource.RLIM_INFINITY else value
                      for value in resource.getrlimit(limit))
        hard = min(x for x in (hard, cap) if x is not None) if (hard or cap) else None
        if hard is not None:
            flags += ["--ulimit", f"{name}={min(soft or hard, hard)}:{hard}"]
    return flags


def cleanup_argv(session: str) -> list[str]:
    """Remove every podman container of `session` on this node (those a killed step left)."""
    return ["podman", "rm", "--force", "--filter", f"label={SESSION_LABEL}={session}"]


def container_argv(runtime: str, run: ContainerRun) -> list[str]:
    if runtime == "apptainer":
        return apptainer_argv(run)
    if runtime == "podman":
        return podman_argv(run)
    raise config_error(f"runtime {runtime!r} is not known",
                       [f"fix: use one of {', '.join(RUNTIMES)}"])


def _under_containers_dir(artifacts: dict, path: str) -> str:
    base = artifacts.get("containers_dir")
    return str(Path(base) / path) if base and not Path(path).is_absolute() else str(path)


def image_reference(runtime: str, artifacts: dict, path: str) -> str:
    """What the runtime runs for an artifact's `path`: Apptainer a .sif file (under
    containers_dir); podman an image name (`localhost/hpcbench-executor:0.1.0`) or, for a
    `.tar` path, that OCI archive (under containers_dir) as `oci-archive:PATH`."""
    if runtime == "podman" and not path.endswith(".tar"):
        return path
    located = _under_containers_dir(artifacts, path)
    return OCI_ARCHIVE + located if runtime == "podman" else located


def service_image(artifacts: dict, runtime: str = "apptainer") -> str:
    """The service image from recipe `artifacts` (service.path, see image_reference)."""
    service = artifacts.get("service") or {}
    path = service.get("path") if isinstance(service, dict) else None
    if not path:
        raise config_error(f"runtime {runtime} needs artifacts.service.path (the service's "
                           "image)", ["fix: set artifacts.service.path, e.g. vllm_latest.sif "
                                      "and artifacts.containers_dir for apptainer, an image "
                                      "name for podman; or use runtime: process"])
    return image_reference(runtime, artifacts, path)


def hpcbench_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("hpcbench")
    except PackageNotFoundError:
        return "0.0.0"


def hpcbench_image(component: str, artifacts: dict,
                   runtime: str = "apptainer") -> tuple[str, str | None, str]:
    """(image, remote, where from) of the image that runs one of hpcbench's own programs
    (`executor`, `monitor`; the simulator runs in the executor's): `artifacts.<component>`,
    else `artifacts.python` (one image with Python and hpcbench for all of them), else the
    image `make images` builds: containers/hpcbench-<component>.sif in the submit directory
    (Apptainer) or localhost/hpcbench-<component>:<this hpcbench's version> (podman).
    "where from" names the recipe key."""
    for key in (component, "python"):
        entry = artifacts.get(key) or {}
        if isinstance(entry, dict) and entry.get("path"):
            return (image_reference(runtime, artifacts, entry["path"]), entry.get("remote"),
                    f"artifacts.{key}")
    if runtime == "podman":
        return f"localhost/hpcbench-{component}:{hpcbench_version()}", None, "make images"
    submit_dir = Path(os.environ.get("SLURM_SUBMIT_DIR", "."))
    return str(submit_dir / "containers" / f"hpcbench-{component}.sif"), None, "make images"


def wrap(argv: list[str], runtime: str, artifacts: dict, binds: list[str],
         gpus: bool = True, image: str | None = None, session: str | None = None) -> list[str]:
    """Return argv for `runtime`; `gpus` gives the container the node's NVIDIA GPUs; the image
    is `image`, by default the service's (`service_image`); `session` (by default the Slurm
    job's id, the session id under run.sbatch) labels podman's container for teardown."""
    if runtime == "process":
        return list(argv)
    if runtime not in CONTAINER_RUNTIMES:
        raise config_error(f"runtime {runtime!r} is not known",
                           [f"fix: use one of {', '.join(RUNTIMES)}"])
    run = ContainerRun(image=image or service_image(artifacts, runtime), argv=tuple(argv),
                       binds=tuple(binds), gpus=gpus,
                       session=session or os.environ.get("SLURM_JOB_ID"))
    return container_argv(runtime, run)
