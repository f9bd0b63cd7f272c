"""`hpcbench list`: a table of the recipes in a folder, invalid ones flagged, not fatal."""
import shutil
import subprocess


def test_list_examples(cli_env, repo):
    done = subprocess.run(["hpcbench", "list", str(repo / "recipes" / "examples")],
                          capture_output=True, text=True, env=cli_env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["FILE", "SCENARIO", "SERVICE", "TRIALS"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["sweep.yaml"] == ["sweep", "simulator", "18"]
    assert rows["local-sim.yaml"] == ["local-sim", "simulator", "3"]
    assert rows["vllm-ray-2nodes.yaml"] == ["vllm-ray-2nodes", "vllm", "1"]
    assert rows["multi-turn.yaml"] == ["multi-turn", "simulator", "2"]
    assert rows["capacity-search.yaml"] == ["capacity-search", "simulator", "search"]
    assert len(rows) == len(list((repo / "recipes" / "examples").glob("*.yaml")))


def test_list_defaults_to_the_examples_and_flags_invalid_recipes(cli_env, repo, tmp_path):
    examples = tmp_path / "recipes" / "examples"
    shutil.copytree(repo / "recipes" / "examples", examples)
    (examples / "broken.yaml").write_text("scenario: b\nworkload: {service: simulator}\n")
    done = subprocess.run(["hpcbench", "list"], capture_output=True, text=True, env=cli_env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "broken.yaml" in done.stdout and "invalid (1 problem(s)" in done.stdout


def test_list_of_a_missing_folder_exits_2(cli_env, tmp_path):
    done = subprocess.run(["hpcbench", "list", str(tmp_path / "nope")], capture_output=True,
                          text=True, env=cli_env)
    assert done.returncode == 2 and "error E006: not a folder" in done.stderr
