"""The example plugins on the virtual Slurm cluster with `sbatch run.sbatch`: hpcbench and the
plugins installed into a FRESH venv in the submit directory (the one run.sbatch runs, and the
one every node sees on the shared filesystem). The coordinator on node1 launches the service
on node2; the executor on node3, a process of its own, loads the plugin's kserve-v2 protocol:
in the process runtime from the venv, in the container runtime from what the stand-in
`apptainer` (a test double: Apptainer cannot be installed here) runs as the executor image."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from support.plugin_venv import fresh_venv, hpcbench_wheel
from support.slurm_cluster import build_cluster, unavailable_reason

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    built = build_cluster(tmp_path_factory.mktemp("vcluster-plugins"))
    try:
        yield built
    finally:
        built.stop()


@pytest.fixture(scope="module")
def submit_dir(tmp_path_factory) -> Path:
    """A submit directory whose .venv has hpcbench and both example plugins."""
    where = tmp_path_factory.mktemp("submit")
    wheel = hpcbench_wheel(tmp_path_factory.mktemp("wheel"))
    fresh_venv(where / ".venv", wheel, "kserve", "triton")
    return where


def recipe(scenario: str, service: str, **extra) -> dict:
    return {"scenario": scenario, "partition": "debug", "account": "bench", "runtime": "process",
            "orchestration": {"mode": "slurm", "total_nodes": 3,
                              "node_allocation": {"servers": {"nodes": 1},
                                                  "clients": {"nodes": 1}},
                              "job_config": {"time_limit": "00:05:00"}},
            "workload": {"service": service, "model": "resnet-mini", "duration": "3s",
                         "warmup": 0, "concurrency": 4,
                         "api_config": {"inputs": [{"name": "input", "datatype": "FP32",
                                                    "shape": [1, 3, 4, 4]}],
                                        "outputs": ["OUTPUT0"]}},
            **extra}


def submit(cluster, workdir: Path, repo: Path, data: dict, path_first: list[Path] = (),
           **env_extra: str) -> str:
    (workdir / "recipe.yaml").write_text(yaml.safe_dump(data))
    env = {**cluster.env, **env_extra}
    env["PATH"] = os.pathsep.join([*map(str, path_first), env["PATH"]])
    submitted = cluster.slurm(["sbatch", "--parsable", "-N3", str(repo / "run.sbatch"),
                               str(workdir / "recipe.yaml")], cwd=workdir, env=env)
    return submitted.stdout.strip().split(";")[0]


def output(workdir: Path, job_id: str) -> str:
    try:
        return (workdir / f"hpcbench-{job_id}.out").read_text()[-3000:]
    except OSError as error:
        return str(error)


def measured(cluster, run_dir: Path) -> tuple[dict, set]:
    """(overall summary, nodes the samples came from) of the job's one trial."""
    from hpcbench.coordinator.session.results import read_samples

    batches = list(read_samples(run_dir / "default" / "samples.msgpack"))
    summary = json.loads((run_dir / "default" / "summary.json").read_text())
    return summary["overall"], {batch.node for batch in batches}


def test_kserve_example_on_slurm_with_the_submit_dirs_venv(cluster, repo, submit_dir):
    job_id = submit(cluster, submit_dir, repo, recipe(
        "kserve-slurm", "kserve-example",
        servers={"service_config": {"delay": 0.002, "instances": 2}}))
    assert cluster.wait_finished(job_id, timeout=240) == "COMPLETED", output(submit_dir, job_id)
    run_dir = submit_dir / "results" / "kserve-slurm" / job_id
    record = json.loads((run_dir / "job.json").read_text())
    assert [s["node"] for s in record["placement"]["servers"]] == ["node2"]
    overall, nodes = measured(cluster, run_dir)
    assert nodes == {"node3"}                       # the executor on node3 spoke kserve-v2
    assert overall["requests"] > 50 and overall["error_total"] == 0
    assert overall["latency"]["ttft"]["count"] == overall["requests"]


def test_triton_plugin_in_the_container_runtime(cluster, repo, submit_dir, tmp_path):
    """runtime: apptainer. The stand-in `apptainer` runs each command on the node with the
    fresh venv first on PATH, standing in for images that have the plugins: the service
    image's `python` serves the model repository as tritonserver would (the KServe example
    server standing in for Triton's HTTP API), the executor image's `hpcbench-executor` loads
    kserve-v2."""
    workdir = tmp_path / "job"
    (workdir / "containers").mkdir(parents=True)
    (workdir / ".venv").symlink_to(submit_dir / ".venv")
    images = tmp_path / "images"
    images.mkdir()
    for component in ("monitor", "executor"):
        (workdir / "containers" / f"hpcbench-{component}.sif").write_bytes(b"standin")
    (images / "tritonserver.sif").write_bytes(b"standin")
    models = tmp_path / "models"
    (models / "resnet-mini" / "1").mkdir(parents=True)
    (models / "resnet-mini" / "config.pbtxt").write_text("max_batch_size: 8\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").symlink_to(repo / "tests" / "support" / "standin_apptainer")
    log = tmp_path / "apptainer.jsonl"
    data = recipe("triton-slurm", "triton", runtime="apptainer",
                  binds=[f"{models}:{models}:ro"],
                  artifacts={"containers_dir": str(images),
                             "service": {"path": "tritonserver.sif"}},
                  servers={"service_config": {
                      "tritonserver": ["python", "-m", "hpcbench_kserve.server"],
                      "model_repository": str(models), "max_batch_size": 2,
                      "instance_group_count": 2, "backend": "hpcbench_example",
                      "delay": 0.002}})
    job_id = submit(cluster, workdir, repo, data, path_first=[bin_dir, submit_dir / ".venv" / "bin"],
                    STANDIN_APPTAINER_LOG=str(log))
    assert cluster.wait_finished(job_id, timeout=240) == "COMPLETED", output(workdir, job_id)
    run_dir = workdir / "results" / "triton-slurm" / job_id
    overall, nodes = measured(cluster, run_dir)
    assert nodes == {"node3"} and overall["requests"] > 50 and overall["error_total"] == 0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    (service,) = [c for c in calls if c["verb"] == "exec" and c["image"].endswith("tritonserver.sif")]
    assert service["node"] == "node2" and service["nv"]
    assert service["command"][:3] == ["python", "-m", "hpcbench_kserve.server"]
    assert service["command"][3:9] == ["--model-repository", str(models), "--model-control-mode",
                                       "explicit", "--load-model", "resnet-mini"]
    # run.sbatch first checks each hpcbench image answers `hpcbench --version`; then the agent
    (executor,) = [c for c in calls if c["verb"] == "exec" and "executor" in c["image"]
                   and c["command"][0] == "hpcbench-executor"]
    assert executor["node"] == "node3"


def test_an_executor_without_the_plugin_fails_the_job_saying_where(cluster, repo, submit_dir,
                                                                   tmp_path):
    """The coordinator's venv has the plugin, the executor image (the stand-in's PATH) has
    not: the job fails with the executor's E006 naming its node and the fix."""
    import sys

    workdir = tmp_path / "job"
    (workdir / "containers").mkdir(parents=True)
    (workdir / ".venv").symlink_to(submit_dir / ".venv")
    for component in ("monitor", "executor"):
        (workdir / "containers" / f"hpcbench-{component}.sif").write_bytes(b"standin")
    (workdir / "service.sif").write_bytes(b"standin")
    image_bin = tmp_path / "image-bin"       # an executor image built without the plugin
    image_bin.mkdir()
    (image_bin / "apptainer").symlink_to(repo / "tests" / "support" / "standin_apptainer")
    for program in ("hpcbench", "hpcbench-executor", "hpcbench-monitor"):   # hpcbench: the
        (image_bin / program).symlink_to(Path(sys.executable).with_name(program))   # image check
    # the service image's python has the example server (scripts, not symlinks: a venv's
    # python reached through a symlink in another folder does not know its venv)
    for name in ("python", "python3"):
        python = image_bin / name
        python.write_text(f'#!/bin/sh\nexec {submit_dir / ".venv" / "bin" / "python"} "$@"\n')
        python.chmod(0o755)
    data = recipe("noplugin", "kserve-example", runtime="apptainer",
                  artifacts={"service": {"path": str(workdir / "service.sif")}},
                  servers={"service_config": {"python": "python"}})   # the service image's
    job_id = submit(cluster, workdir, repo, data, path_first=[image_bin])
    assert cluster.wait_finished(job_id, timeout=240) == "FAILED", output(workdir, job_id)
    record = json.loads((workdir / "results" / "noplugin" / job_id / "job.json").read_text())
    assert "E004" in record["error"], record["error"]
    assert "'kserve-v2' is not a protocol installed where this executor runs (node node3" \
        in record["error"]
    assert "the executor image" in record["error"]
