"""The Slurm backend: sbatch options from a recipe, the job's allocation, and job status.

Peers are found through Slurm only: node names from `SLURM_JOB_NODELIST` expanded with
`scontrol show hostnames`, addresses from each node's `NodeAddr` (`scontrol show node`). Never
`hostname`: on many clusters (and on the test suite's virtual cluster) it does not name the
address other nodes can reach.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from hpcbench.common.errors import HpcbenchError, config_error
from hpcbench.common.ids import check_id

ROLES = ("servers", "clients", "monitors")


def _slurm(argv: list[str], env: Mapping[str, str] | None = None) -> str:
    """Run a Slurm command; E008 naming the command when it is missing or fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    except FileNotFoundError as error:
        raise HpcbenchError("E008", f"`{argv[0]}` is not installed or not on PATH",
                            ("fix: run on a Slurm login/compute node, or `module load slurm`",)
                            ) from error
    except subprocess.TimeoutExpired as error:
        raise HpcbenchError("E007", f"`{shlex.join(argv)}` did not answer within 60s",
                            ("fix: check that slurmctld is up (`scontrol ping`)",)) from error
    if done.returncode != 0:
        raise HpcbenchError("E008", f"`{shlex.join(argv)}` failed (exit {done.returncode})",
                            tuple(line for line in done.stderr.strip().splitlines()[-3:]))
    return done.stdout


# ---- recipe -> sbatch options ----------------------------------------------------------------
def _section(recipe: Mapping, *path: str) -> Mapping:
    node: object = recipe
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def role_nodes(recipe: Mapping) -> dict[str, int]:
    """Nodes the recipe asks for per role (`orchestration.node_allocation.<role>.nodes`)."""
    allocation = _section(recipe, "orchestration", "node_allocation")
    defaults = {"servers": 1, "clients": 1, "monitors": 0}
    return {role: int(_section(allocation, role).get("nodes", defaults[role])) for role in ROLES}


def required_nodes(recipe: Mapping) -> int:
    """Nodes the job needs: `orchestration.total_nodes`, and at least servers + clients +
    monitors (each role on its own nodes)."""
    counts = role_nodes(recipe)
    total = int(_section(recipe, "orchestration").get("total_nodes") or 0)
    return max(1, total, sum(counts.values()))


def gpus_per_node(recipe: Mapping) -> int:
    """GPUs to request on every node: the largest `resources.<role>.gpus`."""
    return max([int(_section(recipe, "resources", role).get("gpus") or 0) for role in ROLES])


def memory_option(gb: float) -> str:
    """`--mem` for `gb` GB: whole gigabytes as `32G`, fractions rounded up to MB (`512M`)."""
    if float(gb).is_integer():
        return f"--mem={int(gb)}G"
    return f"--mem={math.ceil(float(gb) * 1024)}M"


def role_resources(recipe: Mapping, role: str) -> list[str]:
    """srun options of one role's steps (`servers`, `clients`, `monitors`) from
    `resources.<role>.cpus_per_task` and `.mem_gb`: `--cpus-per-task=N`, `--mem=...`."""
    resources = _section(recipe, "resources", role)
    options = []
    if resources.get("cpus_per_task"):
        options.append(f"--cpus-per-task={int(resources['cpus_per_task'])}")
    if resources.get("mem_gb"):
        options.append(memory_option(resources["mem_gb"]))
    return options


def job_resources(recipe: Mapping) -> list[str]:
    """The job's share of every node: one task per node with the CPUs and memory of the
    largest role request, so each role's steps (which overlap on a node) fit in it."""
    cpus = max([int(_section(recipe, "resources", role).get("cpus_per_task") or 0)
                for role in ROLES])
    memory = max([float(_section(recipe, "resources", role).get("mem_gb") or 0)
                  for role in ROLES])
    options = ["--ntasks-per-node=1", f"--cpus-per-task={cpus}"] if cpus else []
    return options + ([memory_option(memory)] if memory else [])


def sbatch_options(recipe: Mapping) -> list[str]:
    """sbatch options for the recipe: partition, account, qos, time, nodes, exclusive, GPUs,
    CPUs and memory per node, job name, plus `job_config` constraint/reservation/
    sbatch_options verbatim."""
    job = _section(recipe, "orchestration", "job_config")
    options = [f"--job-name=hpcbench-{recipe.get('scenario', 'run')}",
               f"--nodes={required_nodes(recipe)}"]
    for key in ("partition", "account", "qos"):
        if recipe.get(key):
            options.append(f"--{key}={recipe[key]}")
    if job.get("time_limit"):
        options.append(f"--time={job['time_limit']}")
    if job.get("exclusive"):
        options.append("--exclusive")
    for key in ("constraint", "reservation"):
        if job.get(key):
            options.append(f"--{key}={job[key]}")
    gpus = gpus_per_node(recipe)
    if gpus:
        options.append(f"--gpus-per-node={gpus}")
    options.extend(job_resources(recipe))
    options.extend(str(option) for option in job.get("sbatch_options") or ())
    return options


def submit(batch_script: str, recipe_path: str, options: list[str],
           env: Mapping[str, str] | None = None) -> str:
    """`sbatch --parsable OPTIONS batch_script recipe_path`; return the job id."""
    out = _slurm(["sbatch", "--parsable", *options, batch_script, recipe_path], env)
    return out.strip().split(";")[0]  # --parsable prints "jobid" or "jobid;cluster"


# ---- the allocation, inside a job ------------------------------------------------------------
@dataclass(frozen=True)
class Allocation:
    """The nodes of the running job, in Slurm's order, with their cluster addresses."""

    job_id: str
    nodes: tuple[str, ...]
    addresses: Mapping[str, str]

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> "Allocation":
        """Read SLURM_JOB_ID / SLURM_JOB_NODELIST and ask Slurm for names and addresses."""
        env = os.environ if env is None else env
        job_id = env.get("SLURM_JOB_ID")
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not job_id or not nodelist:
            raise config_error("not inside a Slurm job (SLURM_JOB_ID/SLURM_JOB_NODELIST unset)",
                               ["fix: submit with `sbatch -N <n> run.sbatch recipe.yaml` or "
                                "`hpcbench submit recipe.yaml`; on one machine use "
                                "`hpcbench run recipe.yaml`"])
        # run.sbatch's session id, so it names the run directory: checked before anything
        check_id(job_id, "Slurm job id (SLURM_JOB_ID, run.sbatch's session id)",
                 "fix: run.sbatch takes the session id from Slurm's job id; submit it with "
                 "sbatch rather than setting SLURM_JOB_ID by hand")
        nodes = tuple(expand_nodelist(nodelist, env))
        return cls(job_id, nodes, {name: node_address(name, env) for name in nodes})


def expand_nodelist(nodelist: str, env: Mapping[str, str] | None = None) -> list[str]:
    """`node[1-3]` -> ['node1', 'node2', 'node3'] via `scontrol show hostnames`."""
    return _slurm(["scontrol", "show", "hostnames", nodelist], env).split()


def node_address(name: str, env: Mapping[str, str] | None = None) -> str:
    """The node's `NodeAddr` (the address its peers reach it on)."""
    for item in _slurm(["scontrol", "show", "node", "--oneliner", name], env).split():
        if item.startswith("NodeAddr="):
            return item.split("=", 1)[1]
    raise HpcbenchError("E008", f"Slurm reports no NodeAddr for node {name!r}",
                        ("fix: check `scontrol show node " + name + "`",))


def check_allocation(recipe: Mapping, allocation: Allocation) -> None:
    """E006 when the job has fewer nodes than the recipe needs, saying how to ask for them."""
    needed, have = required_nodes(recipe), len(allocation.nodes)
    if have < needed:
        counts = role_nodes(recipe)
        raise config_error(
            f"the job has {have} node(s) but the recipe needs {needed} "
            f"({counts['servers']} server, {counts['clients']} client, {counts['monitors']} "
            f"monitor node(s))",
            [f"fix: submit with `sbatch -N {needed} run.sbatch RECIPE` or let "
             "`hpcbench submit RECIPE` build the options from the recipe"])


# ---- job status ------------------------------------------------------------------------------
def job_summary(run_dir) -> str | None:
    """`job 42 running on node1, node2, node3` for a session that run.sbatch ran (its job.json
    in `run_dir`), else None: what `hpcbench status` adds about the Slurm job."""
    from pathlib import Path

    try:
        record = json.loads((Path(run_dir) / "job.json").read_text())
        job_id, nodes = str(record["job_id"]), record["nodes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return f"job {job_id} {job_state(job_id).lower()} on {', '.join(nodes)}"


def job_state(job_id: str, env: Mapping[str, str] | None = None) -> str:
    """The job's state: squeue while it is known there, else sacct, else UNKNOWN."""
    for argv in (["squeue", "-h", "-j", job_id, "-o", "%T"],
                 ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"]):
        try:
            out = _slurm(argv, env).strip()
        except HpcbenchError:
            continue
        if out:
            return out.splitlines()[0].split()[0]
    return "UNKNOWN"


# ---- role placement --------------------------------------------------------------------------
def place_on_allocation(recipe, allocation: Allocation):
    """`plan.place_roles` on the job's nodes (checked first), with endpoints as node addresses:
    the same placement `hpcbench plan` shows (with a node to spare, the first runs only the
    coordinator and its monitor, so the coordinator never competes with the load)."""
    from hpcbench.coordinator.launch.plan import place_roles

    check_allocation(recipe.data, allocation)
    nodes = list(allocation.nodes)
    placement = place_roles(recipe, nodes)
    url_of = {f"http://{name}:": f"http://{address}:" for name, address in allocation.addresses.items()}

    def by_address(url: str) -> str:
        for by_name, by_addr in url_of.items():
            if url.startswith(by_name):
                return by_addr + url[len(by_name):]
        return url

    executors = tuple(replace(slot, targets=tuple(map(by_address, slot.targets)))
                      for slot in placement.executors)
    return replace(placement, coordinator=nodes[0], monitors=tuple(nodes), executors=executors,
                   endpoints=tuple(map(by_address, placement.endpoints)))


GLIBC = ("linux-vdso", "ld-linux", "libc.so", "libm.so", "libresolv.so", "libpthread.so",
         "libdl.so", "librt.so")


def slurm_client_binds() -> list[str]:
    """Read-only binds that let `srun` and `scontrol` run inside an image (the coordinator's,
    under podman): the programs, the libraries they and Slurm's munge plugins load except
    glibc's (Slurm's library folder whole, with its plugins), Slurm's configuration folder
    (SLURM_CONF's, else /etc/slurm), munge's socket folder and the user database. The image's
    glibc must be as new as the host's (Debian bookworm's, 2.36)."""
    programs = [path for path in map(shutil.which, ("srun", "scontrol")) if path]
    libraries: set[str] = set()
    folders: set[str] = set()
    for program in programs:
        for library in _linked(program):
            if "slurm" in Path(library).parent.name:
                folders.add(str(Path(library).parent))
    for folder in list(folders):
        for plugin in ("auth_munge.so", "cred_munge.so"):
            if (Path(folder) / plugin).exists():
                libraries.update(_linked(str(Path(folder) / plugin)))
    for program in programs:
        libraries.update(_linked(program))
    libraries = {lib for lib in libraries if not any(str(Path(lib).parent).startswith(f)
                                                     for f in folders)}
    config = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")).parent
    extra = [str(config), "/run/munge", "/etc/passwd", "/etc/group"]
    paths = sorted(set(programs) | folders | libraries) + [p for p in extra if Path(p).exists()]
    return [f"{path}:{path}:ro" for path in paths]


def _linked(binary: str) -> list[str]:
    """The shared libraries `ldd` resolves for `binary`, glibc's left out."""
    try:
        shown = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in shown.stdout.splitlines():
        _, arrow, rest = line.partition("=>")
        path = rest.split("(")[0].strip() if arrow else ""
        if path.startswith("/") and not any(name in Path(path).name for name in GLIBC):
            found.append(path)
    return found
