"""`make demo` in small: the demo recipe with shortened durations, through the real CLI, with the
simulator deployed by hpcbench itself (service plugin), a monitor and an executor."""
import json
import subprocess
import sys

import yaml


def test_the_demo_recipe_runs_end_to_end_with_a_deployed_simulator(tmp_path, repo):
    demo = yaml.safe_load((repo / "recipes" / "examples" / "local-sim.yaml").read_text())
    assert "endpoints" not in demo   # the demo deploys its own simulator
    demo["workload"].update(duration="1s", warmup="300ms")
    recipe = tmp_path / "demo.yaml"
    recipe.write_text(yaml.safe_dump(demo))
    sweep = demo["workload"]["concurrency"]

    done = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "run", str(recipe),
                           "--results-dir", str(tmp_path / "results"), "--session", "demo",
                           "--no-live"], capture_output=True, text=True, timeout=180)

    assert done.returncode == 0, done.stdout + done.stderr
    session_dir = tmp_path / "results" / demo["scenario"] / "demo"
    finished = sorted(path.name for path in session_dir.iterdir()
                      if (path / "trial.done").exists())
    assert len(finished) == len(sweep)
    for name in ("service", "monitor-localhost", "executor-0"):
        assert (session_dir / "logs" / f"{name}.log").exists(), name
    # the progress went through every phase, and the summary has a row per trial
    for phase in ("preparing", "running", "teardown"):
        assert f"] {phase}" in done.stdout, phase
    rows = [line.split() for line in done.stdout.splitlines()]
    rows = [row for row in rows if row and row[0] in finished]
    assert len(rows) == len(sweep) and all(row[-1] == "ok" for row in rows)
    assert f"completed: {len(sweep)} trial(s) run, 0 skipped" in done.stdout
    # DESIGN section 3, phase by phase, as recorded in session.json
    record = json.loads((session_dir / "session.json").read_text())
    assert [phase["state"] for phase in record["phases"]] == [
        "VALIDATING", "EXPANDING", "DEPLOYING", "PREPARING", "STARTING_MONITORS",
        "STARTING_EXECUTORS", "RUNNING", "TEARDOWN", "REPORTING"]
    assert record["state"] == "COMPLETED"
