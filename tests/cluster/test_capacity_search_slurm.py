"""A capacity search as a real Slurm job on the 3-node virtual cluster: coordinator on node1,
simulator on node2, executor on node3; every probe a trial of the one allocation, and the
answer the simulator's timing model predicts (tests/support/capacity_runs.py) in job.json,
session.json and report.html. Needs root; skips with the reason otherwise."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from support.capacity_runs import expected_capacity, search_recipe
from support.slurm_cluster import build_cluster, unavailable_reason

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    built = build_cluster(tmp_path_factory.mktemp("vcluster"))
    try:
        yield built
    finally:
        built.stop()


def test_a_search_job_finds_the_modelled_capacity_across_nodes(cluster, repo, tmp_path):
    from hpcbench.coordinator.session.results import read_samples

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(search_recipe(
        low=4, high=8, partition="debug", account="bench",
        orchestration={"mode": "slurm", "total_nodes": 3,
                       "node_allocation": {"servers": {"nodes": 1}, "clients": {"nodes": 1}},
                       "job_config": {"time_limit": "00:05:00"}})))
    env = cluster.env
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    submitted = cluster.slurm(["sbatch", "--parsable", "-N3", str(repo / "run.sbatch"),
                               str(recipe)], cwd=tmp_path, env=env)
    job_id = submitted.stdout.strip().split(";")[0]
    state = cluster.wait_finished(job_id, timeout=300)
    run_dir = tmp_path / "results" / "capacity" / job_id
    output = (tmp_path / f"hpcbench-{job_id}.out")
    assert state == "COMPLETED", output.read_text()[-3000:] if output.exists() else state

    capacity = expected_capacity()
    job = json.loads((run_dir / "job.json").read_text())
    assert (job["state"], job["exit_code"]) == ("completed", 0)
    search = job["search"]
    assert (search["status"], search["capacity"], search["lowest_missing"]) == (
        "found", capacity, capacity + 1), search
    assert [probe["load"] for probe in search["probes"]] == [4, 8, 6, 5]
    assert [trial["id"] for trial in job["trials"]] == [
        probe["trial_id"] for probe in search["probes"]]
    assert json.loads((run_dir / "session.json").read_text())["search"] == search
    for probe in search["probes"]:     # each probe measured from node3, results of its own
        batches = list(read_samples(run_dir / probe["trial_id"] / "samples.msgpack"))
        assert batches and {batch.node for batch in batches} == {"node3"}
    assert f"capacity: concurrency {capacity}" in (run_dir / "report.html").read_text()
