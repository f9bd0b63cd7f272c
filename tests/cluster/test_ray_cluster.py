"""Ray for real: the vllm plugin's Ray head and worker commands on two nodes of the virtual
Slurm cluster, the wait-for-all-nodes logic, and `vllm serve` replaced by
tests/support/standin_vllm.py (a test double) that must see a Ray cluster of the right size.

The failure path (a worker that never comes) runs on this machine's loopback without Slurm.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support.ray_standin import standin_ray_config
from support.slurm_cluster import build_cluster, unavailable_reason
from support.waiting import wait_until

from hpcbench.common.errors import HpcbenchError
from hpcbench.servers.registry import get_service, launch_contexts
from tests.support.standalone_server import start_server, stop_server

pytestmark = pytest.mark.slow


def ray_recipe(report: Path, nodes: int, health_timeout: float, temp_root: str) -> dict:
    return {
        "runtime": "process",
        "workload": {"service": "vllm", "model": "tiny-standin"},
        "servers": {"health_check": {"timeout": health_timeout},
                    "service_config": standin_ray_config(report, nodes, temp_root)},
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    built = build_cluster(tmp_path_factory.mktemp("vcluster-ray"))
    try:
        yield built
    finally:
        built.stop()


def test_vllm_over_ray_on_two_slurm_nodes(cluster, tmp_path, ray_temp_root):
    report = tmp_path / "standin.json"
    head_node, worker_node = cluster.nodes[0], cluster.nodes[1]
    placement = {"server_nodes": [head_node.name, worker_node.name],
                 "addresses": {n.name: n.address for n in cluster.nodes}}
    recipe = ray_recipe(report, nodes=2, health_timeout=180, temp_root=ray_temp_root)
    plugin = get_service("vllm")
    steps = []
    try:
        for ctx in reversed(launch_contexts(recipe, placement, tmp_path, job_id="ray-test")):
            spec = plugin.launch(ctx)
            env = [f"{key}={value}" for key, value in spec.env.items()]
            log = open(tmp_path / f"{ctx.node}.log", "wb")
            steps.append(subprocess.Popen(
                ["srun", "--nodes=1", "--ntasks=1", f"--nodelist={ctx.node}",
                 "--job-name=hpcbench-ray-test", "env", *env, *spec.argv],
                env=cluster.env, stdout=log, stderr=subprocess.STDOUT))
        head_url = f"http://{head_node.address}:8000"
        try:
            plugin.wait_healthy(head_url, timeout_s=240, interval_s=0.5)
        except HpcbenchError:
            for node in (head_node, worker_node):
                print(node.name, (tmp_path / f"{node.name}.log").read_text()[-3000:])
            raise
        plugin.prepare(head_url, "tiny-standin", timeout_s=10)
        seen = json.loads(report.read_text())
        assert seen["alive"] == sorted([head_node.address, worker_node.address])
        assert seen["backend"] == "ray"
        assert seen["vllm_host_ip"] == seen["host"] == head_node.address
    finally:
        cluster.slurm(["scancel", "--name=hpcbench-ray-test"], check=False)
        for step in steps:
            try:
                step.wait(60)
            except subprocess.TimeoutExpired:
                step.kill()
    for node in (head_node, worker_node):
        wait_until(lambda node=node: not [p for p in cluster.job_processes(node) if "ray" in p],
                   timeout=60, what=f"Ray processes on {node.name} to end after scancel")


def test_head_gives_up_with_a_clear_error_when_a_worker_never_joins(tmp_path, ray_temp_root):
    """Two server nodes planned, only the head started: E001 naming the missing node count."""
    report = tmp_path / "standin.json"
    recipe = ray_recipe(report, nodes=2, health_timeout=20, temp_root=ray_temp_root)
    placement = {"server_nodes": ["nodeA", "nodeB"],
                 "addresses": {"nodeA": "127.0.0.2", "nodeB": "127.0.0.3"}}
    head = launch_contexts(recipe, placement, tmp_path, job_id=f"lonely-{tmp_path.name}")[0]
    spec = get_service("vllm").launch(head)
    log = tmp_path / "head.log"
    process = start_server(spec, log)
    try:
        code = process.wait(180)
    finally:
        stop_server(process)
    assert code == 11
    text = log.read_text()
    assert "error E001: only 1 of 2 Ray nodes alive" in text
    assert "127.0.0.2" in text and not report.exists()  # vLLM was never started
