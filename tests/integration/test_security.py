"""Security: recipe values that reach shell lines are quoted; secrets stay out of logs.

Recipe strings full of shell metacharacters (hypothesis) go through the command builders that
produce text a shell will read: `hpcbench plan --commands` (servers.registry.launch_commands,
for every built-in service and both runtimes) and run.sbatch's `eval "module load $modules"`
(slurm_job.print_modules). Each generated line is parsed with shlex, and the input must come
back as one whole argv element; then the line runs under bash with printf in front, so a
command substitution or `;` would create a canary file: it must not.

Token checks on the wire (missing, wrong, prefix, longer, raw, garbage bytes) are in
test_fuzz_wire.py; here a real `hpcbench run` proves the token file is 0600 and no log or result
file contains the token.
"""
from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.launch.sbatch_job import print_modules
from hpcbench.recipes import recipe_from_dict
from hpcbench.servers.registry import launch_commands
from tests.support.faults import record

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# printable text rich in what a shell treats specially (bash cannot pass NUL in argv)
hostile = st.lists(st.sampled_from(list("$`;|&<>(){}[]*?!~#'\"\\ \t\n=%^,:@")
                                   + ["a", "Z", "0", "é", "$(", "${", "&&", "touch x"]),
                   min_size=1, max_size=16).map("".join).filter(lambda text: text.strip())


def canary_payloads(canary: Path) -> list[str]:
    return [f"$(touch {canary})", f"`touch {canary}`", f"; touch {canary}",
            f"' ; touch {canary} ; '", f"\"; touch {canary}; \"", f"| touch {canary}",
            f"&& touch {canary}", f"\n touch {canary}", f"${{IFS}}$(touch {canary})"]


def words_deep(line: str) -> list[str]:
    """shlex words of `line`, plus the words of any word that is itself a command line."""
    words = shlex.split(line)
    nested = []
    for word in words:
        if " " in word:
            try:
                nested += shlex.split(word)
            except ValueError:
                pass
    return words + nested


def bash_argv(line: str, cwd: Path) -> list[str]:
    """What bash makes of `line` as arguments (printf prints them NUL-separated)."""
    record("bad_inputs")
    done = subprocess.run(["bash", "-c", "printf '%s\\0' " + line], capture_output=True,
                          cwd=cwd, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().split("\0")[:-1]


SERVICE_RECIPES = {
    "simulator": {"workload": {"service": "simulator", "model": "m"}},
    "vllm": {"workload": {"service": "vllm", "model": "m"},
             "artifacts": {"service": {"path": "vllm.sif"}}},
    "ollama": {"workload": {"service": "ollama", "model": "m"},
               "artifacts": {"service": {"path": "ollama.sif"}}},
    "llamacpp": {"workload": {"service": "llamacpp", "model": "m"},
                 "servers": {"service_config": {"model_path": "/models/m.gguf"}},
                 "artifacts": {"service": {"path": "llama.sif"}}},
}


def server_lines(service: str, runtime: str, model: str, bind: str, image: str,
                 service_config: dict | None = None) -> list[str]:
    data = {"scenario": "sec", "runtime": runtime, **yaml.safe_load(yaml.safe_dump(
        SERVICE_RECIPES[service]))}
    data.setdefault("servers", {}).setdefault("service_config", {}).update(service_config or {})
    data["workload"]["model"] = model
    data["binds"] = [bind]
    data.setdefault("artifacts", {})["service"] = {"path": image + ".sif"}
    try:
        recipe = recipe_from_dict(data)
        lines = launch_commands(recipe, {"server_nodes": ["node1"],
                                         "addresses": {"node1": "10.0.0.1"}}, run_dir="/tmp/r")
    except HpcbenchError as error:   # a value the recipe refuses never reaches a command
        assert error.code == "E006"
        return []
    return [line for line in lines if not line.startswith("#")]


@FUZZ
@given(service=st.sampled_from(sorted(SERVICE_RECIPES)),
       runtime=st.sampled_from(["process", "apptainer"]),
       model=hostile, bind=hostile, image=hostile)
def test_server_commands_keep_hostile_recipe_strings_as_single_words(tmp_path_factory, service,
                                                                     runtime, model, bind, image):
    lines = server_lines(service, runtime, model, bind, image)
    assume(lines)
    cwd = tmp_path_factory.mktemp("shell")
    for line in lines:
        words = words_deep(line)
        if service in ("vllm", "simulator"):   # ollama pulls the model later over HTTP;
            # llama.cpp serves model_path
            assert model in words or any(word.endswith("=" + model) for word in words), line
        if runtime == "apptainer":
            assert bind in words and any(word.endswith(image + ".sif") for word in words), line
        assert bash_argv(line, cwd) == shlex.split(line)
    assert not any(cwd.iterdir()), "the shell created files: a value was executed"


@FUZZ
@given(service=st.sampled_from(sorted(SERVICE_RECIPES)),
       runtime=st.sampled_from(["process", "apptainer"]), value=hostile)
def test_hostile_service_config_values_stay_single_words(tmp_path_factory, service, runtime,
                                                         value):
    """service_config values (a model path, an engine flag, an environment variable) reach
    the server command as data, never as shell syntax."""
    config = {"model_path": value, "tokenizer": value, "env": {"HPCBENCH_FUZZ": value}}
    lines = server_lines(service, runtime, "m", "/data:/data", "image", config)
    assume(lines)
    cwd = tmp_path_factory.mktemp("config")
    for line in lines:
        assert bash_argv(line, cwd) == shlex.split(line)
    assert not any(cwd.iterdir()), "the shell created files: a value was executed"


@FUZZ
@given(value=hostile)
def test_submit_dry_run_prints_hostile_sbatch_values_as_single_words(tmp_path_factory, value,
                                                                   capsys):
    """Recipe values that become sbatch options (partition, account, qos, constraint, extra
    options) come out of `hpcbench submit --dry-run` as one shell word each."""
    from hpcbench.coordinator.cli.main import main

    cwd = tmp_path_factory.mktemp("submit")
    recipe = cwd / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "scenario": "sec", "partition": value, "account": value, "qos": value,
        "orchestration": {"job_config": {"constraint": value,
                                         "sbatch_options": [f"--comment={value}"]}},
        "workload": {"service": "simulator", "model": "m"}}))
    capsys.readouterr()
    if main(["submit", str(recipe), "--dry-run"]) != 0:
        return                                  # refused by validation: nothing is printed
    line = capsys.readouterr().out.rstrip("\n")
    argv = bash_argv(line, cwd)
    assert argv == shlex.split(line)
    for option in ("--partition", "--account", "--qos", "--constraint", "--comment"):
        assert f"{option}={value}" in argv, (option, argv)
    assert not any(path.name != "recipe.yaml" for path in cwd.iterdir())


@pytest.mark.parametrize("runtime", ["process", "apptainer"])
def test_canary_payloads_in_server_commands_do_not_execute(tmp_path, runtime):
    canary = tmp_path / "canary"
    for payload in canary_payloads(canary):
        lines = server_lines("vllm", runtime, payload, payload, payload)
        assert lines, payload
        for line in lines:
            subprocess.run(["bash", "-c", "printf '%s\\0' " + line], capture_output=True,
                           cwd=tmp_path, timeout=20)
    assert not canary.exists()


def test_plan_commands_cli_prints_quoted_lines(tmp_path, cli_env):
    canary = tmp_path / "canary"
    model = f"m$(touch {canary})'\";x"
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"scenario": "sec", "runtime": "process",
                                    "workload": {"service": "vllm", "model": model}}))
    done = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "plan", str(path),
                           "--commands"], capture_output=True, text=True, env=cli_env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.strip() for line in done.stdout.split("server commands:")[1].splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert lines and all(model in words_deep(line) for line in lines)
    for line in lines:
        bash_argv(line, tmp_path)
    assert not canary.exists()


def module_load_argv(recipe: Path, cwd: Path) -> list[str]:
    """What run.sbatch's `eval "module load $modules"` passes to `module`."""
    script = ('modules=$("$PY" -c "import sys; from hpcbench.coordinator.launch.sbatch_job import '
              'print_modules; sys.exit(print_modules(sys.argv[1]))" "$1") || exit $?\n'
              'module() { printf "%s\\0" "$@"; }\n'
              'eval "module load $modules"\n')
    done = subprocess.run(["bash", "-c", script, "run.sbatch", str(recipe)], cwd=cwd,
                          capture_output=True, timeout=60, env={**os.environ, "PY": sys.executable})
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().split("\0")[:-1]


def test_module_names_with_shell_payloads_reach_module_load_verbatim(tmp_path):
    canary = tmp_path / "canary"
    modules = ["Apptainer", "CUDA/12.2 extra", *canary_payloads(canary)]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"scenario": "sec", "modules": modules,
                                      "workload": {"service": "simulator", "model": "m"}}))
    assert module_load_argv(recipe, tmp_path) == ["load", *modules]
    assert not canary.exists()


@FUZZ
@given(modules=st.lists(hostile, min_size=1, max_size=3))
def test_any_module_names_are_quoted_for_eval(tmp_path_factory, modules, capsys):
    recipe = tmp_path_factory.mktemp("modules") / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"scenario": "sec", "modules": modules,
                                      "workload": {"service": "simulator", "model": "m"}}))
    record("bad_inputs")
    capsys.readouterr()
    if print_modules(recipe) != 0:
        return                                  # refused by validation: nothing reaches bash
    line = capsys.readouterr().out.rstrip("\n")
    assert shlex.split("module load " + line) == ["module", "load", *modules]


# ---- a real run: token file mode, no token in logs ------------------------------------------------

def test_a_run_keeps_its_token_private_and_out_of_every_log(tmp_path, cli_env):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "scenario": "sec-run", "orchestration": {"mode": "local"},
        "workload": {"service": "simulator", "model": "sim-model", "duration": "1s",
                     "warmup": "0s", "concurrency": [1], "load": {"pattern": "closed"},
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 8},
                                 "output_tokens": {"distribution": "fixed", "mean": 4}}}}))
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "run", str(recipe),
                           "--results-dir", str(results), "--session", "s", "--no-live"],
                          capture_output=True, text=True, env=cli_env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    session = results / "sec-run" / "s"
    tokens = list(session.rglob("control.token"))
    assert tokens
    for token_file in tokens:
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = tokens[0].read_text().strip()
    assert len(token) >= 32
    assert token not in done.stdout + done.stderr
    leaked = [path for path in session.rglob("*") if path.is_file()
              and path.name != "control.token" and token.encode() in path.read_bytes()]
    assert leaked == []
