"""`hpcbench submit` as a process: the --dry-run sbatch command line, a bad recipe failing before
sbatch, and no sbatch installed (the Slurm backend's pure parts are in
tests/unit/test_slurm_backend.py; real sbatch/srun runs in tests/cluster/test_slurm_cluster.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_submit_dry_run_prints_the_sbatch_command(repo, cli_env, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("scenario: dry\npartition: debug\naccount: p1\norchestration: {mode: slurm, "
                      "total_nodes: 3, job_config: {time_limit: '10:00'}}\n"
                      "workload: {service: simulator, model: m}\n")
    shown = subprocess.run(["hpcbench", "submit", "--dry-run", str(recipe)], cwd=repo,
                           env=cli_env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["sbatch", "--parsable", "--job-name=hpcbench-dry",
                                    "--nodes=3", "--partition=debug", "--account=p1",
                                    "--time=10:00",
                                    str(repo / "run.sbatch"), str(recipe)]


def test_submit_of_a_bad_recipe_fails_before_sbatch(cli_env, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("scenario: bad\nworkload: {service: simulator, duration: soon}\n")
    shown = subprocess.run(["hpcbench", "submit", str(recipe)], env=cli_env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 2
    assert "E006" in shown.stderr and "workload.duration" in shown.stderr


def test_submit_without_slurm_says_where_to_run(cli_env, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("scenario: s\npartition: debug\naccount: p1\norchestration: {mode: slurm}\n"
                      "workload: {service: simulator, model: m}\n")
    env = dict(cli_env, PATH=str(tmp_path))  # no sbatch anywhere on PATH
    hpcbench = str(Path(sys.executable).with_name("hpcbench"))
    shown = subprocess.run([hpcbench, "submit", str(recipe)], env=env, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 18
    assert "E008" in shown.stderr and "`sbatch` is not installed" in shown.stderr
