"""`sbatch run.sbatch recipe.yaml` with `runtime: podman`: hpcbench's images (`make images`,
built here with podman from containers/*.def) run as real containers on the virtual Slurm
cluster's nodes; the results are complete and nothing (container, conmon, process) is left on
any node afterwards, after a normal end and after `scancel`. Needs root, podman and the images;
skips with the reason otherwise (`make images` builds them)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.podman_images import images_missing
from support.slurm_cluster import build_cluster, unavailable_reason
from support.waiting import WaitTimeout, wait_until

from hpcbench.servers.runtime import SESSION_LABEL, cleanup_argv

pytestmark = pytest.mark.slow
SUBMITTED: list[str] = []
COORDINATOR = "hpcbench.coordinator.launch.sbatch_job"
# (the coordinator's `python -m hpcbench.common.process_group ... srun` launchers are not)
PROGRAMS = {COORDINATOR, "hpcbench-executor", "hpcbench-monitor", "hpcbench sim"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason() or images_missing()
    if reason:
        pytest.skip(reason)
    built = build_cluster(tmp_path_factory.mktemp("vcluster-podman"))
    try:
        yield built
    finally:
        built.stop()
        # what a Slurm epilog does: a failed test must not leave containers to the next run
        # (a rebuilt cluster numbers its jobs from 1 again)
        for job_id in SUBMITTED:
            subprocess.run(cleanup_argv(job_id), capture_output=True)


def submit(cluster, repo: Path, workdir: Path, servers: dict | None = None,
           duration: str = "6s") -> str:
    """recipes/examples/podman-sim.yaml, one trial of `duration`."""
    data = yaml.safe_load((repo / "recipes" / "examples" / "podman-sim.yaml").read_text())
    data["workload"].update(duration=duration, warmup=0, concurrency=2)
    if servers:
        data["servers"] = servers
    recipe = workdir / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    env = cluster.env
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    submitted = cluster.slurm(["sbatch", "--parsable", "-N3", str(repo / "run.sbatch"),
                               str(recipe)], cwd=workdir, env=env)
    SUBMITTED.append(submitted.stdout.strip().split(";")[0])
    return SUBMITTED[-1]


def containers(job_id: str) -> list[dict]:
    """podman's containers of the job (all nodes share this machine's podman storage)."""
    shown = subprocess.run(["podman", "ps", "--all", "--format", "json", "--filter",
                            f"label={SESSION_LABEL}={job_id}"], capture_output=True, text=True,
                           check=True)
    return json.loads(shown.stdout or "[]")


def contained(cluster, node) -> list[str]:
    """The hpcbench programs running inside a podman container on `node`, by name
    (`hpcbench-executor`, `hpcbench sim`, `hpcbench.coordinator.launch.sbatch_job`, ...):
    processes of podman's cgroup whose command is the image's Python running one of them (the
    coordinator's `srun` steps are left out)."""
    found = []
    for line in cluster.job_processes(node):
        pid, _, command = line.partition(": ")
        words = command.split()
        if len(words) < 3 or not Path(words[0]).name.startswith("python"):
            continue
        try:
            if "libpod-" not in Path(f"/proc/{pid}/cgroup").read_text():
                continue
        except OSError:
            continue
        if words[1] == "-m":
            found.append(words[2])
        elif Path(words[1]).name == "hpcbench":
            found.append(f"hpcbench {words[2]}")
        else:
            found.append(Path(words[1]).name)
    return found


def wait_nothing_left(cluster, job_id: str) -> None:
    """Wait until no container of the job and no process on any node is left; else fail
    naming what is."""
    left = lambda: ([(c["Command"], c["State"]) for c in containers(job_id)] +  # noqa: E731
                    [p for node in cluster.nodes for p in cluster.job_processes(node)])
    try:
        wait_until(lambda: not left(), timeout=60, what="nothing of the job left")
    except WaitTimeout:
        pytest.fail(f"left on the nodes: {left()}")


def test_each_component_runs_in_its_container_on_its_node(cluster, repo, tmp_path):
    job_id = submit(cluster, repo, tmp_path, duration="10s")
    seen: dict[str, set[str]] = {}

    def every_component_seen() -> bool:
        for node in cluster.nodes:
            for program in set(contained(cluster, node)) & PROGRAMS:
                seen.setdefault(program, set()).add(node.name)
        return set(seen) == PROGRAMS and len(seen["hpcbench-monitor"]) == 3

    try:
        wait_until(every_component_seen, timeout=120, interval=0.5,
                   what="executor, simulator and monitors in containers on their nodes")
    finally:
        state = cluster.wait_finished(job_id, timeout=180)
    output = (tmp_path / f"hpcbench-{job_id}.out").read_text()
    assert state == "COMPLETED", output[-3000:]
    assert seen == {COORDINATOR: {"node1"}, "hpcbench-executor": {"node3"},
                    "hpcbench sim": {"node2"}, "hpcbench-monitor": {"node1", "node2", "node3"}}
    run_dir = tmp_path / "results" / "podman-sim" / job_id
    assert (run_dir / "default" / "trial.done").exists(), list(run_dir.iterdir())
    overall = json.loads((run_dir / "default" / "summary.json").read_text())["overall"]
    assert overall["requests"] > 0 and overall["error_total"] == 0
    assert overall["latency"]["ttft"]["count"] == overall["requests"]
    wait_nothing_left(cluster, job_id)


@pytest.mark.parametrize("how, state", [
    (["scancel"], "cancelled"),
    # what `--signal=B:USR1@60` sends to the batch shell 60 s before the time limit
    (["scancel", "--batch", "--signal=USR1"], "time-limit"),
])
def test_scancel_and_the_time_limit_stop_and_remove_every_container(cluster, repo, tmp_path,
                                                                    how, state):
    job_id = submit(cluster, repo, tmp_path, duration="5m")
    run_dir = tmp_path / "results" / "podman-sim" / job_id
    samples = run_dir / "default" / "samples.msgpack.partial"
    wait_until(lambda: "hpcbench-executor" in contained(cluster, cluster.node("node3")) and
               samples.exists() and samples.stat().st_size > 0,
               timeout=120, what="the executor's container on node3 measuring")
    # the simulator, the executor and a monitor per node (the coordinator's has no session
    # label: the session's teardown removes the labelled ones from inside it)
    assert len(containers(job_id)) == 5
    cluster.slurm([*how, job_id])
    cluster.wait_finished(job_id)
    wait_nothing_left(cluster, job_id)
    record = json.loads((run_dir / "job.json").read_text())
    assert record["state"] == state
    assert [t["state"] for t in record["trials"]] == ["partial"]
    assert (run_dir / "default" / "trial.stopped").exists()
    assert samples.stat().st_size > 0
