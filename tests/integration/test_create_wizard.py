"""`hpcbench create`: the wizard driven through stdin and through flags writes valid recipes."""
import subprocess

import yaml

from hpcbench.recipes import expand_trials, load_recipe


def create(cli_env, cwd, *args, stdin=""):
    return subprocess.run(["hpcbench", "create", *args], input=stdin, capture_output=True,
                          text=True, env=cli_env, cwd=cwd, timeout=60)


def test_wizard_on_stdin_with_a_wrong_answer_then_a_right_one(cli_env, tmp_path):
    answers = "\n".join([
        "vlm",          # service: wrong, asked again
        "vllm",         # service
        "my-vllm",      # scenario
        "",             # model: default
        "slurm",        # mode
        "1",            # server nodes
        "2",            # client nodes
        "4",            # GPUs per server node
        "batch",        # partition: not a GPU partition, asked again
        "gpu-a100",     # partition
        "p200981",      # account
        "",             # time limit: default
        "",             # image: default
        "",             # tensor parallel: default (4 GPUs)
        "16",           # streams per client node
        "1,4,16",       # concurrency sweep
        "poisson",      # load pattern
        "25",           # rate
        "2m",           # duration
        "",             # warmup
        "256",          # prompt length
        "",             # output length
    ]) + "\n"
    done = create(cli_env, tmp_path, stdin=answers)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "'vlm' is not one of" in done.stdout and "pick a GPU partition" in done.stdout
    recipe = load_recipe(tmp_path / "recipes" / "my-vllm.yaml")
    data = recipe.data
    assert data["partition"] == "gpu-a100" and data["account"] == "p200981"
    assert data["orchestration"]["node_allocation"]["clients"]["nodes"] == 2
    assert data["servers"]["service_config"]["tensor_parallel_size"] == 4
    assert data["workload"]["load"] == {**data["workload"]["load"], "pattern": "poisson",
                                        "rate": 25}
    assert data["workload"]["duration"] == 120.0
    assert [trial.id for trial in expand_trials(recipe)] == [
        "concurrency-1", "concurrency-4", "concurrency-16"]


def test_defaults_on_empty_lines_give_the_local_simulator(cli_env, tmp_path):
    done = create(cli_env, tmp_path, "-o", "r.yaml", stdin="\n" * 20)
    assert done.returncode == 0, done.stderr
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.workload["service"] == "simulator"
    assert recipe.data["orchestration"]["mode"] == "local"


def test_flags_with_yes_ask_nothing(cli_env, tmp_path):
    done = create(cli_env, tmp_path, "-y", "--service", "vllm-distributed", "--account", "p1",
                  "--server-nodes", "3", "-o", "ray.yaml")
    assert done.returncode == 0, done.stderr
    data = load_recipe(tmp_path / "ray.yaml").data
    distributed = data["servers"]["service_config"]["distributed"]
    assert distributed["enabled"] is True and distributed["tensor_parallel_size"] == 6
    assert data["orchestration"]["total_nodes"] == 4
    assert yaml.safe_load((tmp_path / "ray.yaml").read_text())["workload"]["service"] == "vllm"


def test_bad_flags_are_all_listed_and_nothing_is_written(cli_env, tmp_path):
    done = create(cli_env, tmp_path, "-y", "--mode", "slurm", "--duration", "2x",
                  "--client-nodes", "0", "-o", "bad.yaml")
    assert done.returncode == 2
    assert "error E006" in done.stderr and "Traceback" not in done.stderr
    for words in ("--duration: '2x'", "--client-nodes: '0'", "--account: required"):
        assert words in done.stderr
    assert not (tmp_path / "bad.yaml").exists()


def test_input_ending_early_is_a_clear_error(cli_env, tmp_path):
    done = create(cli_env, tmp_path, stdin="ollama\n")
    assert done.returncode == 2
    assert "input ended" in done.stderr


def test_existing_file_is_kept_without_force(cli_env, tmp_path):
    (tmp_path / "r.yaml").write_text("keep me")
    done = create(cli_env, tmp_path, "-y", "-o", "r.yaml")
    assert done.returncode == 2 and "--force" in done.stderr
    assert (tmp_path / "r.yaml").read_text() == "keep me"
    assert create(cli_env, tmp_path, "-y", "-o", "r.yaml", "--force").returncode == 0
    assert load_recipe(tmp_path / "r.yaml").scenario == "simulator-bench"


def test_flags_that_do_not_apply_are_refused(cli_env, tmp_path):
    done = create(cli_env, tmp_path, "-y", "--partition", "gpu", "--model-path", "m.gguf",
                  "-o", "r.yaml")
    assert done.returncode == 2
    assert "--partition: does not apply" in done.stderr
    assert "--model-path: does not apply" in done.stderr
