"""`hpcbench validate` as a process: problems listed with exit status 2, a valid recipe exits 0
(the validation rules themselves are checked in process by tests/unit/test_recipe_validation.py)."""
import subprocess
import sys


def test_cli_validate_lists_problems_and_exits_2(tmp_path, cli_env, repo):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenario: x\nworkload: {service: vlm, model: m, duration: 2x}\n")
    done = subprocess.run(["hpcbench", "validate", str(bad),
                           str(repo / "recipes/examples/sweep.yaml")],
                          capture_output=True, text=True, env=cli_env)
    assert done.returncode == 2
    assert "error E006" in done.stderr and "Traceback" not in done.stderr
    assert "workload.duration: got '2x'" in done.stderr
    assert 'did you mean "vllm"' in done.stderr
    assert "ok: " in done.stdout and "18 trial(s)" in done.stdout


def test_cli_validate_ok_exits_0(cli_env, repo):
    done = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "validate",
                           str(repo / "recipes/examples/local-sim.yaml")],
                          capture_output=True, text=True, env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "3 trial(s)" in done.stdout
