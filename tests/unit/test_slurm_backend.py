"""The Slurm backend's pure parts: sbatch options from recipes, allocation checks, placement.
The `hpcbench submit` command line is in tests/integration/test_slurm_submit_cli.py; real
sbatch/srun runs are in tests/cluster/test_slurm_cluster.py."""
from __future__ import annotations

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.launch import slurm
from hpcbench.recipes.loader import load_recipe, recipe_from_dict

RAW = {"scenario": "sim-slurm", "partition": "debug", "account": "p200", "qos": "short",
       "runtime": "process",
       "workload": {"service": "simulator", "model": "sim-llama", "duration": "5s"}}


def slurm_recipe(**orchestration) -> dict:
    return recipe_from_dict({**RAW, "orchestration": {"mode": "slurm", **orchestration}}).data


def test_options_carry_partition_account_qos_time_nodes_exclusive():
    recipe = slurm_recipe(total_nodes=3, job_config={"time_limit": "00:30:00", "exclusive": True,
                                                     "sbatch_options": ["--mail-type=END"]})
    assert slurm.sbatch_options(recipe) == [
        "--job-name=hpcbench-sim-slurm", "--nodes=3", "--partition=debug", "--account=p200",
        "--qos=short", "--time=00:30:00", "--exclusive", "--mail-type=END"]


def test_gpus_come_from_the_largest_role_request():
    recipe = slurm_recipe()
    recipe["resources"] = {"servers": {"gpus": 4}, "clients": {"gpus": 0}}
    assert "--gpus-per-node=4" in slurm.sbatch_options(recipe)
    recipe["resources"] = {}
    assert not any(o.startswith("--gpus") for o in slurm.sbatch_options(recipe))


@pytest.mark.parametrize("example, nodes", [("vllm-ray-2nodes.yaml", 5), ("vllm-single.yaml", 2),
                                            ("local-sim.yaml", 2)])
def test_example_recipes_ask_for_enough_nodes(repo, example, nodes):
    recipe = load_recipe(repo / "recipes" / "examples" / example).data
    assert f"--nodes={nodes}" in slurm.sbatch_options(recipe)


def allocation(count: int) -> slurm.Allocation:
    names = tuple(f"n{k}" for k in range(1, count + 1))
    return slurm.Allocation("42", names, {name: f"10.0.0.{k}" for k, name in enumerate(names, 1)})


def test_too_small_allocation_names_the_sbatch_fix():
    with pytest.raises(HpcbenchError) as caught:
        slurm.check_allocation(slurm_recipe(total_nodes=3), allocation(2))
    rendered = caught.value.render()
    assert caught.value.code == "E006"
    assert "has 2 node(s) but the recipe needs 3" in rendered
    assert "sbatch -N 3" in rendered and "hpcbench submit" in rendered


def test_spare_first_node_is_the_coordinators_alone_and_targets_are_addresses():
    recipe = recipe_from_dict({**RAW, "orchestration": {"mode": "slurm", "total_nodes": 3}})
    placement = slurm.place_on_allocation(recipe, allocation(3))
    assert placement.coordinator == "n1"
    assert [server.node for server in placement.servers] == ["n2"]
    assert [slot.node for slot in placement.executors] == ["n3"]
    assert placement.monitors == ("n1", "n2", "n3")
    assert placement.endpoints == ("http://10.0.0.2:8000",)
    assert placement.executors[0].targets == ("http://10.0.0.2:8000",)


@pytest.mark.parametrize("nodes", [2, 3, 5, 8])
def test_run_sbatch_places_roles_as_hpcbench_plan_shows_them(nodes):
    """run.sbatch used to drop the spare first node twice: with two or more spare nodes its
    placement left nodes idle that `hpcbench plan` used."""
    from hpcbench.coordinator.launch.plan import place_roles

    recipe = recipe_from_dict({**RAW, "orchestration": {"mode": "slurm", "total_nodes": nodes}})
    job = slurm.place_on_allocation(recipe, allocation(nodes))
    plan = place_roles(recipe, [f"n{k}" for k in range(1, nodes + 1)])
    assert [server.node for server in job.servers] == [server.node for server in plan.servers]
    assert [slot.node for slot in job.executors] == [slot.node for slot in plan.executors]
    assert job.coordinator == plan.coordinator == "n1"


def test_without_a_spare_node_the_coordinator_shares_the_first_server_node():
    recipe = recipe_from_dict({**RAW, "orchestration": {"mode": "slurm", "total_nodes": 2}})
    placement = slurm.place_on_allocation(recipe, allocation(2))
    assert placement.coordinator == "n1"
    assert [server.node for server in placement.servers] == ["n1"]
    assert [slot.node for slot in placement.executors] == ["n2"]


def test_outside_a_job_the_allocation_error_says_how_to_submit():
    with pytest.raises(HpcbenchError) as caught:
        slurm.Allocation.from_environment({})
    assert "not inside a Slurm job" in caught.value.message
    assert "hpcbench submit" in caught.value.render()


def test_a_missing_image_is_pulled_only_when_the_recipe_allows(tmp_path):
    """artifacts.pull: false (compute nodes without registry access, or a site rule) turns a
    missing image into an E003 saying how to get it, before any `apptainer pull` runs."""
    from hpcbench.coordinator.launch.srun import ensure_image

    recipe = recipe_from_dict({"scenario": "p", "workload": {"service": "simulator",
                                                             "model": "m"}})
    assert recipe.data["artifacts"]["pull"] is True            # the default
    image = tmp_path / "vllm.sif"
    with pytest.raises(HpcbenchError) as caught:
        ensure_image(str(image), "docker://vllm/vllm-openai:latest", pull_allowed=False)
    assert caught.value.code == "E003" and "artifacts.pull is false" in caught.value.message
    assert f"apptainer pull {image} docker://vllm/vllm-openai:latest" in caught.value.details[0]
    image.write_bytes(b"present")                                # present: nothing to pull
    ensure_image(str(image), "docker://vllm/vllm-openai:latest", pull_allowed=False)


def test_cpus_and_memory_go_on_the_job_and_on_each_roles_steps():
    """resources.<role>.cpus_per_task / mem_gb: the job asks every node for the largest
    request (one task per node), and each role's srun steps ask for their own."""
    from hpcbench.coordinator.launch.srun import srun_step

    recipe = slurm_recipe(node_allocation={"monitors": {"nodes": 1}})
    recipe["resources"] = {"servers": {"cpus_per_task": 16, "mem_gb": 64},
                           "clients": {"cpus_per_task": 4, "mem_gb": 0.5},
                           "monitors": {"mem_gb": 8}}
    options = slurm.sbatch_options(recipe)
    assert options[-3:] == ["--ntasks-per-node=1", "--cpus-per-task=16", "--mem=64G"]
    assert slurm.role_resources(recipe, "servers") == ["--cpus-per-task=16", "--mem=64G"]
    assert slurm.role_resources(recipe, "clients") == ["--cpus-per-task=4", "--mem=512M"]
    assert slurm.role_resources(recipe, "monitors") == ["--mem=8G"]
    step = srun_step("n2", "service-n2", ["vllm", "serve"],
                     slurm.role_resources(recipe, "servers"))
    assert step[:step.index("vllm")] == [
        "srun", "--overlap", "--nodes=1", "--ntasks=1", "--cpus-per-task=16", "--mem=64G",
        "--nodelist=n2", "--job-name=service-n2", "--kill-on-bad-exit=1", "--export=ALL"]
    recipe["resources"] = {}
    assert not any(o.startswith(("--cpus", "--mem", "--ntasks")) for o in
                   slurm.sbatch_options(recipe))


def test_monitor_nodes_count_in_the_nodes_the_job_needs():
    recipe = slurm_recipe(node_allocation={"monitors": {"nodes": 2}})
    assert slurm.required_nodes(recipe) == 4          # 1 server + 1 client + 2 monitors
    with pytest.raises(HpcbenchError) as caught:
        slurm.check_allocation(recipe, allocation(3))
    assert "2 monitor node(s)" in caught.value.message


def test_hpcbench_images_come_from_the_role_then_artifacts_python_then_make_images(
        monkeypatch, tmp_path):
    from hpcbench.coordinator.launch.srun import component_image

    monkeypatch.setenv("SLURM_SUBMIT_DIR", str(tmp_path))
    data = {"artifacts": {"containers_dir": "/c",
                          "python": {"path": "py.sif", "remote": "docker://hpc/py:1"},
                          "monitor": {"path": "/abs/mon.sif"},
                          "service": {"path": "vllm.sif", "remote": "docker://vllm/x:1"}}}
    assert component_image("executor", data) == ("/c/py.sif", "docker://hpc/py:1")
    assert component_image("monitor", data) == ("/abs/mon.sif", None)
    assert component_image("service", data) == ("/c/vllm.sif", "docker://vllm/x:1")
    assert component_image("executor", {"artifacts": {}}) == (
        str(tmp_path / "containers" / "hpcbench-executor.sif"), None)


def test_standin_apptainer_an_image_without_hpcbench_is_refused_before_any_step(
        monkeypatch, tmp_path, repo):
    """artifacts.python as the reference wrote it (a plain Python image) cannot run executors:
    E003 with the fix. `apptainer` is the stand-in (a TEST DOUBLE: Apptainer cannot be installed
    here) that runs the command on the host, where the image's missing `hpcbench` is a script
    that fails as a shell would."""
    import os
    import sys
    from pathlib import Path

    from hpcbench.coordinator.launch.srun import check_hpcbench_image

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").symlink_to(repo / "tests" / "support" / "standin_apptainer")
    (bin_dir / "hpcbench").write_text("#!/bin/sh\necho 'hpcbench: not found' >&2\nexit 127\n")
    (bin_dir / "hpcbench").chmod(0o755)
    image = tmp_path / "python_3_12_3_v2.sif"
    image.write_bytes(b"standin image")
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}")
    with pytest.raises(HpcbenchError) as caught:
        check_hpcbench_image(str(image))
    assert caught.value.code == "E003" and "python_3_12_3_v2.sif" in caught.value.message
    assert "artifacts.python.path" in caught.value.render()
    assert "hpcbench: not found" in caught.value.render()
    (bin_dir / "hpcbench").unlink()          # the host's hpcbench, as in an image that has it
    check_hpcbench_image(str(image))
