"""Real Slurm jobs on a 3-node virtual cluster (network namespaces on a bridge, real slurmctld,
slurmd and munged; see tests/support/slurm_cluster.py). Needs root; skips with the reason
otherwise."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.slurm_cluster import VirtualCluster, build_cluster, unavailable_reason

pytestmark = [pytest.mark.root, pytest.mark.slow]


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


def write_recipe(path, total_nodes: int = 3, **extra) -> None:
    recipe = {"scenario": "vsim", "partition": "debug", "account": "bench", "runtime": "process",
              "orchestration": {"mode": "slurm", "total_nodes": total_nodes,
                                "node_allocation": {"servers": {"nodes": 1},
                                                    "clients": {"nodes": 1}},
                                "job_config": {"time_limit": "00:05:00"}},
              "workload": {"service": "simulator", "model": "sim-llama", "duration": "3s",
                           "warmup": 0, "concurrency": 2,
                           "dataset": {"output_tokens": {"distribution": "fixed", "mean": 8}}},
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
from hpcbench.coordinator.slurm import Allocation
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
