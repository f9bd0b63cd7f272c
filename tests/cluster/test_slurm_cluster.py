"""Real Slurm jobs on a 3-node virtual cluster (network namespaces on a bridge, real slurmctld,
slurmd and munged; see tests/support/slurm_cluster.py). Needs root; skips with the reason
otherwise."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.slurm_cluster import VirtualCluster, build_cluster, unavailable_reason
from support.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> VirtualCluster:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    built = build_cluster(tmp_path_factory.mktemp("vcluster"))
    try:
        yield built
    finally:
        built.stop()


def test_each_step_runs_on_its_own_node_with_its_own_address(cluster):
    shown = cluster.slurm(["srun", "-N3", "-l", "bash", "-c",
                           "echo $SLURMD_NODENAME $(ip -4 -o addr show eth0 | awk '{print $4}')"])
    seen = {line.split()[1]: line.split()[2].split("/")[0]
            for line in shown.stdout.splitlines() if line.strip()}
    assert seen == {node.name: node.address for node in cluster.nodes}


def write_recipe(path, total_nodes: int = 3, workload: dict | None = None, **extra) -> None:
    """A simulator recipe for the 3-node cluster; `workload` overrides workload keys, `extra`
    adds top-level keys."""
    recipe = {"scenario": "vsim", "partition": "debug", "account": "bench", "runtime": "process",
              "orchestration": {"mode": "slurm", "total_nodes": total_nodes,
                                "node_allocation": {"servers": {"nodes": 1},
                                                    "clients": {"nodes": 1}},
                                "job_config": {"time_limit": "00:05:00"}},
              "workload": {"service": "simulator", "model": "sim-llama", "duration": "3s",
                           "warmup": 0, "concurrency": 2,
                           "dataset": {"output_tokens": {"distribution": "fixed", "mean": 8}},
                           **(workload or {})},
              **extra}
    path.write_text(yaml.safe_dump(recipe))


def cli_cluster_env(cluster) -> dict:
    env = cluster.env
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_submit_builds_the_options_and_the_job_sees_its_nodes_and_addresses(cluster, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    write_recipe(recipe)
    script = tmp_path / "show_allocation.sbatch"
    script.write_text(f"""#!/bin/bash
{sys.executable} -c '
import json
from hpcbench.coordinator.launch.slurm import Allocation
a = Allocation.from_environment()
print(json.dumps({{"nodes": a.nodes, "addresses": a.addresses}}))' > allocation.json
""")
    env = cli_cluster_env(cluster)
    submitted = subprocess.run(["hpcbench", "submit", "--script", str(script), str(recipe)],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert job_id.isdigit()
    assert cluster.wait_finished(job_id) == "COMPLETED"
    shown = cluster.slurm(["scontrol", "show", "job", "-o", job_id]).stdout
    assert "NumNodes=3 " in shown and "TimeLimit=00:05:00" in shown and "Partition=debug" in shown
    seen = json.loads((tmp_path / "allocation.json").read_text())
    assert seen == {"nodes": [n.name for n in cluster.nodes],
                    "addresses": {n.name: n.address for n in cluster.nodes}}


def sbatch(cluster, workdir: Path, *args: str) -> str:
    submitted = cluster.slurm(["sbatch", "--parsable", *args], cwd=workdir,
                              env=cli_cluster_env(cluster))
    return submitted.stdout.strip().split(";")[0]


def test_too_small_allocation_fails_with_the_sbatch_fix(cluster, repo, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    write_recipe(recipe, total_nodes=3)
    job_id = sbatch(cluster, tmp_path, "-N2", str(repo / "run.sbatch"), str(recipe))
    assert cluster.wait_finished(job_id) == "FAILED"
    output = (tmp_path / f"hpcbench-{job_id}.out").read_text()
    assert "E006" in output and "has 2 node(s) but the recipe needs 3" in output
    assert "sbatch -N 3" in output and "hpcbench submit" in output
    assert "ExitCode=2:0" in cluster.slurm(["scontrol", "show", "job", "-o", job_id]).stdout


def test_scancel_stops_every_step_on_every_node_and_records_the_job(cluster, repo, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    # The simulator stays unready for 5 minutes, so the job is mid-deploy when cancelled.
    write_recipe(recipe, servers={"service_config": {"not_ready_s": 300},
                                  "health_check": {"timeout": "10m"}})
    job_id = sbatch(cluster, tmp_path, "-N3", str(repo / "run.sbatch"), str(recipe))
    run_dir = tmp_path / "results" / "vsim" / job_id
    server = cluster.node("node2")
    wait_until(lambda: any(" sim " in line for line in cluster.job_processes(server)),
               timeout=60, what="the simulator step on node2")
    cluster.slurm(["scancel", job_id])
    assert cluster.wait_finished(job_id) == "CANCELLED"
    wait_until(lambda: not any(cluster.job_processes(node) for node in cluster.nodes),
               timeout=30, what="every process of the job to end on every node")
    record = wait_until(lambda: (run_dir / "job.json").exists() and
                        json.loads((run_dir / "job.json").read_text()), timeout=10,
                        what="job.json")
    assert record["state"] == "cancelled"
    assert record["placement"]["coordinator"] == "node1"
    assert [s["node"] for s in record["placement"]["servers"]] == ["node2"]


def step_environment(cluster, node: str, program: str) -> dict[str, str]:
    """The environment of the first process on `node` whose command line has `program`."""
    for line in cluster.job_processes(cluster.node(node)):
        pid, _, command = line.partition(": ")
        if program in command:
            raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            return dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    return {}


def test_resources_reach_the_job_and_each_roles_steps(cluster, repo, tmp_path):
    """resources.<role>.cpus_per_task / mem_gb: `hpcbench submit` asks every node for the
    largest (one task per node), and each role's step asks for its own: Slurm's accounting
    of the job and the steps, the environment it gives the simulator and the steps' srun
    command lines show it."""
    recipe = tmp_path / "recipe.yaml"
    # the simulator stays unready, so every step is running when Slurm is asked
    write_recipe(recipe, servers={"service_config": {"not_ready_s": 300},
                                  "health_check": {"timeout": "10m"}},
                 resources={"servers": {"cpus_per_task": 2, "mem_gb": 1},
                            "clients": {"cpus_per_task": 1, "mem_gb": 0.5},
                            "monitors": {"mem_gb": 0.25}})
    submitted = subprocess.run(["hpcbench", "submit", "--script", str(repo / "run.sbatch"),
                                str(recipe)], cwd=tmp_path, env=cli_cluster_env(cluster),
                               capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    try:
        def steps() -> dict[str, str] | None:
            """Step name -> `scontrol show step` line, once the three steps run."""
            shown = cluster.slurm(["scontrol", "-o", "show", "step", job_id], check=False)
            found = {field.split("=", 1)[1]: line for line in shown.stdout.splitlines()
                     for field in line.split() if field.startswith("Name=")}
            wanted = {"service-node2", "executor-0", "monitor-node3"}
            return found if wanted <= set(found) else None

        running = wait_until(steps, timeout=90, what="the service, executor and monitor steps")
        job = cluster.slurm(["scontrol", "show", "job", "-o", job_id]).stdout
        assert "MinCPUsNode=2 " in job and "MinMemoryNode=1G " in job, job
        assert "TRES=cpu=2," in running["service-node2"], running["service-node2"]
        assert "TRES=cpu=1," in running["executor-0"], running["executor-0"]
        # this cluster does not count memory (SelectTypeParameters=CR_CPU): the memory each
        # step asked for is on the command line of its srun, which Slurm accepted
        sruns = {name: line for line in cluster.job_processes(cluster.node("node1"))
                 for name in ("service-node2", "executor-0", "monitor-node3")
                 if " srun " in f" {line.partition(': ')[2]}" and f"--job-name={name} " in line}
        assert "--cpus-per-task=2 --mem=1G " in sruns["service-node2"], sruns
        assert "--cpus-per-task=1 --mem=512M " in sruns["executor-0"], sruns
        assert "--mem=256M " in sruns["monitor-node3"], sruns
        # the step runs before the simulator in it has started: wait for its process
        simulator = wait_until(lambda: step_environment(cluster, "node2", " sim ") or None,
                               timeout=60, what="the simulator's process on node2")
        assert simulator["SLURM_CPUS_PER_TASK"] == "2"
    finally:
        cluster.slurm(["scancel", job_id])
        cluster.wait_finished(job_id)


def test_apptainer_runtime_runs_each_step_in_its_image_on_its_node(cluster, repo, tmp_path):
    """With a stand-in `apptainer` on PATH (a test double: Apptainer cannot be installed here)."""
    bin_dir, images, data = tmp_path / "bin", tmp_path / "images", tmp_path / "data"
    for folder in (bin_dir, images, data, tmp_path / "containers"):
        folder.mkdir()
    (bin_dir / "apptainer").symlink_to(repo / "tests" / "support" / "standin_apptainer")
    for component in ("monitor", "executor"):
        (tmp_path / "containers" / f"hpcbench-{component}.sif").write_bytes(b"standin")
    recipe = tmp_path / "recipe.yaml"
    write_recipe(recipe, runtime="apptainer", binds=[f"{data}:/data:ro"],
                 artifacts={"containers_dir": str(images),
                            "service": {"path": "sim.sif", "remote": "docker://example/sim:1"}})
    log = tmp_path / "apptainer.jsonl"
    env = cli_cluster_env(cluster)
    env.update(PATH=f"{bin_dir}:{env['PATH']}", STANDIN_APPTAINER_LOG=str(log))
    job_id = cluster.slurm(["sbatch", "--parsable", "-N3", str(repo / "run.sbatch"), str(recipe)],
                           cwd=tmp_path, env=env).stdout.strip()
    assert cluster.wait_finished(job_id, timeout=180) == "COMPLETED", job_output(tmp_path, job_id)
    run_dir = tmp_path / "results" / "vsim" / job_id
    trials = [path for path in run_dir.iterdir() if (path / "trial.done").exists()]
    assert trials and all((path / "summary.json").exists() for path in trials), list(run_dir.iterdir())
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    pulls = [c for c in calls if c["verb"] == "pull"]
    assert pulls == [{"verb": "pull", "image": str(images / "sim.sif"),
                      "remote": "docker://example/sim:1", "node": "node1"}]
    # before any step, the images of hpcbench's programs are checked on the batch host
    checks = [c for c in calls if c["verb"] == "exec" and c["command"] == ["hpcbench",
                                                                          "--version"]]
    assert sorted((Path(c["image"]).name, c["node"]) for c in checks) == [
        ("hpcbench-executor.sif", "node1"), ("hpcbench-monitor.sif", "node1")]
    by_image = {}
    for call in calls:
        if call["verb"] == "exec" and call not in checks:
            by_image.setdefault(Path(call["image"]).name, []).append(call)
    (service,) = by_image["sim.sif"]
    assert service["node"] == "node2" and not service["nv"]
    assert service["bind"] == [f"{data}:/data:ro"]
    assert service["command"][:4] == ["hpcbench", "sim", "--host", cluster.node("node2").address]
    monitors = by_image["hpcbench-monitor.sif"]
    assert sorted(m["node"] for m in monitors) == ["node1", "node2", "node3"]
    assert all(m["nv"] and m["command"][0] == "hpcbench-monitor" for m in monitors)
    (executor,) = by_image["hpcbench-executor.sif"]
    assert executor["node"] == "node3" and executor["command"][:2] == ["hpcbench-executor",
                                                                       "--coordinator"]
    assert executor["command"][2].startswith(cluster.node("node1").address + ":")


def test_sbatch_runs_the_sweep_with_roles_on_their_nodes(cluster, repo, tmp_path):
    """Coordinator on node1, simulator on node2, executor on node3, a monitor on every node;
    both sweep trials run in the one allocation and the load comes from node3's address."""
    from hpcbench.coordinator.session.results import read_samples, read_summary

    recipe = tmp_path / "recipe.yaml"
    write_recipe(recipe, workload={"concurrency": [1, 2]})
    job_id = sbatch(cluster, tmp_path, "-N3", str(repo / "run.sbatch"), str(recipe))
    server, client = cluster.node("node2"), cluster.node("node3")
    # the load reaches the simulator from node3's address (node1 only checks its health and
    # node2's monitor scrapes its /metrics)
    wait_until(lambda server=server: client.address in cluster.tcp_peers(server, 8000), timeout=120,
               what="a connection from node3 to the simulator on node2")
    assert cluster.wait_finished(job_id, timeout=180) == "COMPLETED", job_output(tmp_path, job_id)
    run_dir = tmp_path / "results" / "vsim" / job_id
    record = json.loads((run_dir / "job.json").read_text())
    assert record["state"] == "completed" and record["exit_code"] == 0
    assert record["control"].startswith(cluster.node("node1").address + ":")
    assert [t["state"] for t in record["trials"]] == ["finished", "finished"]
    for trial in record["trials"]:
        batches = list(read_samples(run_dir / trial["id"] / "samples.msgpack"))
        assert batches and {batch.node for batch in batches} == {"node3"}
        requests = sum(batch.n for batch in batches)
        assert requests > 0
        summary = read_summary(run_dir / trial["id"])
        overall = summary["overall"]
        assert overall["requests"] + overall["warmup_requests"] + overall["drain_requests"] == requests
        # across machines by default: samples and bus on CURVE, the control port on TLS
        assert summary["integrity"]["protection"] == {
            "data_plane": "curve", "control_plane": "tls", "control_token": "required"}
    for node in cluster.nodes:
        assert (run_dir / "telemetry" / f"{node.name}.csv").stat().st_size > 0


def test_executors_spread_over_every_server_node(cluster, repo, tmp_path):
    """Two simulators (node1, node2) and two executors on node3, round-robin: load from node3
    reaches both servers, and both executors' samples are in the results."""
    from hpcbench.coordinator.session.results import read_samples

    recipe = tmp_path / "recipe.yaml"
    write_recipe(recipe)
    data = yaml.safe_load(recipe.read_text())
    data["orchestration"]["node_allocation"] = {
        "servers": {"nodes": 2},
        "clients": {"nodes": 1, "executors_per_node": 2, "distribution_strategy": "round-robin"}}
    recipe.write_text(yaml.safe_dump(data))
    job_id = sbatch(cluster, tmp_path, "-N3", str(repo / "run.sbatch"), str(recipe))
    client = cluster.node("node3")
    for server in (cluster.node("node1"), cluster.node("node2")):
        wait_until(lambda server=server: client.address in cluster.tcp_peers(server, 8000), timeout=120,
                   what=f"a connection from node3 to the simulator on {server.name}")
    assert cluster.wait_finished(job_id, timeout=180) == "COMPLETED", job_output(tmp_path, job_id)
    run_dir = tmp_path / "results" / "vsim" / job_id
    (trial,) = json.loads((run_dir / "job.json").read_text())["trials"]
    batches = list(read_samples(run_dir / trial["id"] / "samples.msgpack"))
    assert {batch.executor for batch in batches} == {"executor-0", "executor-1"}


def job_output(workdir: Path, job_id: str) -> str:
    """The batch script's output, for assertion messages."""
    try:
        return (workdir / f"hpcbench-{job_id}.out").read_text()[-3000:]
    except OSError as error:
        return str(error)


@pytest.mark.parametrize("how, state, slurm_state, exit_code", [
    (["scancel"], "cancelled", "CANCELLED", 143),
    # what `--signal=B:USR1@60` sends to the batch shell 60 s before the time limit
    (["scancel", "--batch", "--signal=USR1"], "time-limit", "FAILED", 17),
])
def test_stopping_mid_sweep_keeps_finished_trials_and_marks_the_partial_one(
        cluster, repo, tmp_path, how, state, slurm_state, exit_code):
    from hpcbench.recipes import expand_trials, load_recipe

    recipe = tmp_path / "recipe.yaml"
    write_recipe(recipe, workload={"concurrency": [1, 2], "duration": "4s"})
    first, second = (trial.id for trial in expand_trials(load_recipe(recipe)))
    job_id = sbatch(cluster, tmp_path, "-N3", str(repo / "run.sbatch"), str(recipe))
    run_dir = tmp_path / "results" / "vsim" / job_id
    # stop the job as soon as the second trial has started (each trial runs 4 s)
    wait_until(lambda: (run_dir / first / "trial.done").exists() and (run_dir / second).exists(),
               timeout=120, interval=0.05, what="the first trial finished and the second running")
    cluster.slurm([*how, job_id])
    assert cluster.wait_finished(job_id) == slurm_state
    wait_until(lambda: not any(cluster.job_processes(node) for node in cluster.nodes),
               timeout=30, what="every process of the job to end on every node")
    record = json.loads((run_dir / "job.json").read_text())
    assert (record["state"], record["exit_code"]) == (state, exit_code), job_output(tmp_path, job_id)
    assert [t["state"] for t in record["trials"]] == ["finished", "partial"]
    assert (run_dir / first / "summary.json").exists()
    assert not (run_dir / second / "trial.done").exists()


def test_a_server_dying_mid_trial_fails_the_job_and_leaves_nothing_on_any_node(cluster, repo,
                                                                              tmp_path):
    """The simulator on node2 is killed mid-trial: the session fails with E001 (its step
    ended), run.sbatch records it, and teardown leaves no process of the job on any node."""
    recipe = tmp_path / "recipe.yaml"
    write_recipe(recipe, workload={"duration": "60s"})
    job_id = sbatch(cluster, tmp_path, "-N3", str(repo / "run.sbatch"), str(recipe))
    run_dir = tmp_path / "results" / "vsim" / job_id

    def simulator_pid() -> int | None:
        for pid in subprocess.run(["ip", "netns", "pids", cluster.node("node2").netns],
                                  capture_output=True, text=True).stdout.split():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"sim" in command and any(word.endswith(b"hpcbench") for word in command):
                return int(pid)
        return None

    wait_until(lambda: (run_dir / "default").is_dir(), timeout=120, interval=0.1,
               what="the trial to start")
    os.kill(wait_until(simulator_pid, timeout=30, what="the simulator on node2"), signal.SIGKILL)
    assert cluster.wait_finished(job_id, timeout=120) == "FAILED", job_output(tmp_path, job_id)
    wait_until(lambda: not any(cluster.job_processes(node) for node in cluster.nodes),
               timeout=30, what="every process of the job to end on every node")
    record = json.loads((run_dir / "job.json").read_text())
    assert (record["state"], record["exit_code"]) == ("failed", 11), job_output(tmp_path, job_id)
    assert "E001" in record["error"] and "service-node2" in record["error"]
    assert [t["state"] for t in record["trials"]] == ["partial"]


def test_status_and_stop_reach_the_session_of_a_running_job(cluster, repo, tmp_path):
    """`hpcbench status` / `hpcbench stop` from outside the job talk to its coordinator on
    node1's address; stop ends the job gracefully with everything stopped on every node."""
    recipe = tmp_path / "recipe.yaml"
    write_recipe(recipe, workload={"duration": "60s"})
    job_id = sbatch(cluster, tmp_path, "-N3", str(repo / "run.sbatch"), str(recipe))
    env = cli_cluster_env(cluster)

    def verb(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["hpcbench", *args, "--session", job_id], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)

    shown = wait_until(lambda: (done := verb("status")).returncode == 0
                       and "state     running" in done.stdout and done,
                       timeout=120, interval=0.5, what="the session to be running")
    assert "executor-0 on node3" in shown.stdout
    assert f"slurm     job {job_id} running on node1, node2, node3" in shown.stdout
    assert f"results   {tmp_path / 'results' / 'vsim' / job_id}\n" in shown.stdout
    stopped = verb("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert cluster.wait_finished(job_id) == "FAILED"  # 130: stopped before the sweep's end
    record = json.loads((tmp_path / "results" / "vsim" / job_id / "job.json").read_text())
    assert (record["state"], record["exit_code"]) == ("stopped", 130)
    assert [t["state"] for t in record["trials"]] == ["partial"]
    wait_until(lambda: not any(cluster.job_processes(node) for node in cluster.nodes),
               timeout=30, what="every process of the job to end on every node")


def test_the_recipes_modules_are_loaded_before_the_session(cluster, repo, tmp_path):
    """`modules` go to `module load` (here a stand-in shell function exported into the job,
    failing on purpose so the job ends at once with the clear message)."""
    recipe = tmp_path / "recipe.yaml"
    write_recipe(recipe, modules=["Apptainer/1.2.5", "CUDA"])
    calls = tmp_path / "module-calls.txt"
    env = cli_cluster_env(cluster)
    env["BASH_FUNC_module%%"] = f'() {{ echo "$@" >> {calls}; return 1; }}'
    job_id = cluster.slurm(["sbatch", "--parsable", "-N3", str(repo / "run.sbatch"), str(recipe)],
                           cwd=tmp_path, env=env).stdout.strip()
    assert cluster.wait_finished(job_id) == "FAILED"
    assert calls.read_text() == "load Apptainer/1.2.5 CUDA\n"
    assert "'module load Apptainer/1.2.5 CUDA' failed" in job_output(tmp_path, job_id)


def test_repetitions_run_one_after_another_in_one_allocation(cluster, repo, tmp_path):
    from hpcbench.recipes import expand_trials, load_recipe

    recipe = tmp_path / "recipe.yaml"
    write_recipe(recipe, workload={"duration": "1s"}, repetitions=2)
    expected = [trial.id for trial in expand_trials(load_recipe(recipe))]
    assert len(expected) == 2 and len(set(expected)) == 2
    job_id = sbatch(cluster, tmp_path, "-N3", str(repo / "run.sbatch"), str(recipe))
    assert cluster.wait_finished(job_id, timeout=180) == "COMPLETED", job_output(tmp_path, job_id)
    run_dir = tmp_path / "results" / "vsim" / job_id
    record = json.loads((run_dir / "job.json").read_text())
    assert [(t["id"], t["state"]) for t in record["trials"]] == [(trial_id, "finished")
                                                                for trial_id in expected]
    assert all((run_dir / trial_id / "summary.json").exists() for trial_id in expected)


def test_histogram_mode_on_several_nodes_gives_the_results_of_raw_mode(cluster, repo, tmp_path):
    """Four executors on two client nodes run the same fixed request count twice, once sending
    raw batches and once histograms (docs/scale.md). Counts agree between the runs; in
    histogram mode every executor's raw rows were kept on its node and gathered into
    samples.msgpack, the merged live histograms are bucket for bucket those raw batches give,
    and its percentiles match the exact ones within each value's bucket width."""
    from hpcbench.common.measure.buckets import HistogramConfig
    from hpcbench.common.measure.histogram import Histogram
    from hpcbench.coordinator.ingest.aggregator import Aggregator
    from hpcbench.coordinator.session.results import NODE_SAMPLES, read_samples, read_summary

    summaries = {}
    for mode in ("raw", "histograms"):
        workdir = tmp_path / mode
        workdir.mkdir()
        recipe = workdir / "recipe.yaml"
        write_recipe(recipe, workload={"duration": "60s", "max_requests": 240, "concurrency": 8},
                     aggregation={"mode": mode})
        data = yaml.safe_load(recipe.read_text())
        data["orchestration"]["node_allocation"] = {
            "servers": {"nodes": 1}, "clients": {"nodes": 2, "executors_per_node": 2}}
        recipe.write_text(yaml.safe_dump(data))
        job_id = sbatch(cluster, workdir, "-N3", str(repo / "run.sbatch"), str(recipe))
        assert cluster.wait_finished(job_id, timeout=180) == "COMPLETED", \
            job_output(workdir, job_id)
        run_dir = workdir / "results" / "vsim" / job_id
        (trial,) = json.loads((run_dir / "job.json").read_text())["trials"]
        trial_dir = run_dir / trial["id"]
        summaries[mode] = summary = read_summary(trial_dir)
        assert summary["aggregation"]["mode"] == mode
        batches = list(read_samples(trial_dir / "samples.msgpack"))
        assert len({batch.node for batch in batches}) == 2          # executors on two nodes
        assert len({batch.executor for batch in batches}) == 4
        assert not (trial_dir / NODE_SAMPLES).exists()
        integrity = summary["integrity"]
        assert integrity["unstored_batches"] == integrity["missing_batches"] == 0
        assert integrity["summary_batches"] == (len(batches) if mode == "histograms" else 0)
        overall = summary["overall"]
        assert overall["requests"] + overall["warmup_requests"] + overall["drain_requests"] \
            == sum(batch.n for batch in batches)
        # what raw mode makes of the stored rows is what was shown live, bucket for bucket
        offline = Aggregator(run_id=summary["run"])
        offline.open_trial(trial["id"], summary["slos_s"])
        for batch in batches:
            offline.ingest(batch)
        replayed = offline.close_trial(trial["id"])
        for metric, encoded in summary["histograms"].items():
            assert (Histogram.decode(encoded).counts == replayed.histograms[metric].counts).all()
        config = HistogramConfig()
        for metric, exact in summary["exact"].items():
            live = overall["latency"][metric]
            assert live["count"] == exact["count"]
            for key in ("p50", "p90", "p99", "max"):
                if exact[key] is None:
                    continue
                index = config.index_of_value(round(exact[key] * 1e6))
                width = config.highest_equivalent_value(index) \
                    - int(config.lowest_equivalent(index)) + 1
                assert abs(live[key] - exact[key]) * 1e6 <= width, (mode, metric, key)
    raw, histograms = summaries["raw"]["overall"], summaries["histograms"]["overall"]
    for key in ("requests", "ok", "error_total", "input_tokens", "output_tokens"):
        assert histograms[key] == raw[key], key
    assert raw["requests"] == 240
    for metric in ("ttft", "itl", "tpot", "e2e"):
        assert histograms["latency"][metric]["count"] == raw["latency"][metric]["count"]
