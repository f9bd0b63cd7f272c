"""Recipe validation: every example is valid; each bad recipe yields its path and message, all
problems at once, as E006 (exit 2) and never a traceback."""
import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcbench.common.errors import HpcbenchError
from hpcbench.recipes import count_trials, load_recipe, recipe_from_dict, validate

LOCAL = {
    "scenario": "t",
    "workload": {"service": "simulator", "model": "sim-llama", "duration": "10s"},
}
SLURM = {
    "scenario": "t", "partition": "gpu", "account": "p1",
    "orchestration": {"mode": "slurm", "total_nodes": 3,
                      "node_allocation": {"servers": {"nodes": 2}, "clients": {"nodes": 1}}},
    "resources": {"servers": {"gpus": 2}},
    "workload": {"service": "vllm", "model": "m"},
    "artifacts": {"service": {"path": "vllm.sif"}},
}
EXPECTED_TRIALS = {"local-sim.yaml": 3, "sweep.yaml": 18, "ollama-single.yaml": 1,
                   "vllm-single.yaml": 1, "vllm-ray-2nodes.yaml": 1, "llamacpp-cpu.yaml": 1,
                   "prefix-reasoning-sim.yaml": 1, "multi-turn.yaml": 2,
                   "local-histograms.yaml": 1, "podman-sim.yaml": 2,
                   "capacity-search.yaml": 1}   # its probes are chosen as it runs


def edited(base, *changes):
    """A deep copy of `base` with (dotted path, value) changes; value DELETE removes the key."""
    data = copy.deepcopy(base)
    for path, value in changes:
        *parents, leaf = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return data


DELETE = object()

BAD_RECIPES = [
    # (id, recipe, expected path, expected words in the message)
    ("bad duration", edited(LOCAL, ("workload.duration", "2x")), "workload.duration", "1h30m"),
    ("negative warmup", edited(LOCAL, ("workload.warmup", "-5s")), "workload.warmup", "duration"),
    ("bool duration", edited(LOCAL, ("workload.duration", True)), "workload.duration", "duration"),
    ("bad slo", edited(LOCAL, ("workload.slo", {"ttft": "fast"})), "workload.slo.ttft", "500ms"),
    ("fractional token mean", edited(LOCAL, ("workload.dataset", {
        "kind": "synthetic", "input_tokens": {"distribution": "normal", "mean": 12.5}})),
     "workload.dataset.input_tokens.mean", "positive integer"),
    ("typo in workload key", edited(LOCAL, ("workload.concurency", [1, 2])),
     "workload.concurency", 'did you mean "concurrency"'),
    ("typo in top-level key", edited(LOCAL, ("scenaro", "x")), "scenaro", 'did you mean "scenario"'),
    ("unknown key without match", edited(LOCAL, ("workload.zzz", 1)), "workload.zzz",
     "allowed keys: api"),
    ("workload key at the top level", edited(LOCAL, ("clients_per_node", 3)), "clients_per_node",
     "belongs under orchestration.node_allocation.clients or workload"),
    ("top-level key inside workload", edited(LOCAL, ("workload.partition", "gpu")),
     "workload.partition", "belongs under the top level"),
    ("unknown service", edited(LOCAL, ("workload.service", "vlm")), "workload.service",
     'did you mean "vllm"'),
    ("bad load pattern", edited(LOCAL, ("workload.load", {"pattern": "poison"})),
     "workload.load.pattern", 'did you mean "poisson"'),
    ("zero in sweep", edited(LOCAL, ("workload.concurrency", [0, 4])), "workload.concurrency",
     "positive integer"),
    ("empty sweep", edited(LOCAL, ("workload.concurrency", [])), "workload.concurrency",
     "non-empty list"),
    ("repeated sweep value", edited(LOCAL, ("workload.prompt_len", [128, 128])),
     "workload.prompt_len", "distinct"),
    ("ollama api on vllm", edited(SLURM, ("workload.api", "ollama-chat")), "workload.api",
     "does not speak the Ollama API"),
    ("batch without completions api", edited(LOCAL, ("workload.batch", [1, 4])), "workload.batch",
     "openai-completions"),
    ("open loop without rate", edited(LOCAL, ("workload.load", {"pattern": "poisson"})),
     "workload.load.rate", "open loop"),
    ("burst without size", edited(LOCAL, ("workload.load", {"pattern": "burst", "rate": 5,
                                                             "burst_pause": "2s"})),
     "workload.load.burst_size", "burst"),
    ("trace without file", edited(LOCAL, ("workload.load", {"pattern": "trace"})),
     "workload.load.trace", "JSONL"),
    ("closed loop with rate", edited(LOCAL, ("workload.load", {"pattern": "closed", "rate": 5})),
     "workload.load.rate", "no rate with pattern 'closed'"),
    ("sharegpt without path", edited(LOCAL, ("workload.dataset", {"kind": "sharegpt"})),
     "workload.dataset.path", "sharegpt file"),
    ("uniform without max", edited(LOCAL, ("workload.dataset", {
        "input_tokens": {"distribution": "uniform", "min": 10}})),
     "workload.dataset.input_tokens.max", "needs min and max"),
    ("uniform min above max", edited(LOCAL, ("workload.dataset", {
        "output_tokens": {"distribution": "uniform", "min": 50, "max": 10}})),
     "workload.dataset.output_tokens.max", ">= min (50)"),
    ("negative gpus", edited(SLURM, ("resources.servers.gpus", -1)), "resources.servers.gpus",
     "integer >= 0"),
    ("zero cpus", edited(LOCAL, ("resources", {"clients": {"cpus_per_task": 0}})),
     "resources.clients.cpus_per_task", "positive integer"),
    ("zero memory", edited(LOCAL, ("resources", {"servers": {"mem_gb": 0}})),
     "resources.servers.mem_gb", "positive number"),
    ("image not .sif", edited(SLURM, ("artifacts.service.path", "vllm.img")),
     "artifacts.service.path", "ending in .sif"),
    ("slurm without account", edited(SLURM, ("account", DELETE)), "account",
     "orchestration.mode is slurm"),
    ("gpus on a cpu partition", edited(SLURM, ("partition", "batch")), "partition",
     "GPU partition"),
    ("tensor parallel beyond gpus", edited(SLURM, ("servers", {"service_config": {"distributed": {
        "enabled": True, "tensor_parallel_size": 8}}})),
     "servers.service_config.distributed.tensor_parallel_size", "= 4"),
    ("single-node tensor parallel beyond gpus", edited(SLURM, ("servers", {"service_config": {
        "tensor_parallel_size": 4}})),
     "servers.service_config.tensor_parallel_size", "on the one server node"),
    ("role nodes beyond total", edited(SLURM, ("orchestration.node_allocation.servers.nodes", 4)),
     "orchestration.node_allocation.servers.nodes", "at most orchestration.total_nodes (3)"),
    ("roles sum beyond total", edited(SLURM, ("orchestration.node_allocation.clients.nodes", 2)),
     "orchestration.total_nodes", "servers + clients + monitors nodes = 4"),
    ("scenario with a space", edited(LOCAL, ("scenario", "my run")), "scenario",
     "letters, digits"),
    ("endpoint without scheme", edited(LOCAL, ("endpoints", ["localhost:8000"])), "endpoints[0]",
     "http(s)://"),
    ("unknown runtime", edited(LOCAL, ("runtime", "docker")), "runtime", "process, apptainer"),
    ("error threshold above 1", edited(LOCAL, ("workload.error_threshold", 1.5)),
     "workload.error_threshold", "fraction"),
    ("unquoted time limit", edited(SLURM, ("orchestration.job_config", {"time_limit": 7200})),
     "orchestration.job_config.time_limit", "quoted Slurm time limit"),
    ("bad bind mode", edited(LOCAL, ("binds", ["/a:/b:rx"])), "binds[0]", "Apptainer bind"),
    ("distributed ollama", edited(SLURM, ("workload.service", "ollama"), ("workload.api", None),
                                  ("servers", {"service_config": {"distributed": {"enabled": True}}})),
     "servers.service_config.distributed.enabled", "built for vllm"),
    ("llama.cpp without gguf", edited(LOCAL, ("workload.service", "llamacpp")),
     "servers.service_config.model_path", "GGUF"),
    ("missing model", edited(LOCAL, ("workload.model", DELETE)), "workload.model",
     "required key"),
    ("health path without slash", edited(LOCAL, ("servers", {"health_check": {"endpoint": "health"}})),
     "servers.health_check.endpoint", "starting with '/'"),
    ("pushgateway not a url", edited(LOCAL, ("monitoring", {"pushgateway": "gw:9091"})),
     "monitoring.pushgateway", "Pushgateway"),
    ("zero repetitions", edited(LOCAL, ("repetitions", 0)), "repetitions", "positive integer"),
    ("strategy typo", edited(LOCAL, ("orchestration", {"node_allocation": {"clients": {
        "distribution_strategy": "roundrobin"}}})),
     "orchestration.node_allocation.clients.distribution_strategy", 'did you mean "round-robin"'),
    ("no servers and no endpoints", edited(LOCAL, ("orchestration", {"node_allocation": {
        "servers": {"nodes": 0}}})),
     "orchestration.node_allocation.servers.nodes", "nothing to benchmark"),
    ("apptainer without image", edited(SLURM, ("artifacts", DELETE)), "artifacts.service.path",
     "runtime apptainer"),
    ("stream not boolean", edited(LOCAL, ("workload.stream", "yes")), "workload.stream", "boolean"),
    ("port out of range", edited(LOCAL, ("servers", {"service_config": {"port": 70000}})),
     "servers.service_config.port", "TCP port"),
    # keys the schema documents, where they would change nothing, and the reference's keys
    ("simulator flag it does not have", edited(LOCAL, ("servers", {"service_config": {
        "gpu_layers": 0, "ttft_mss": 5}})),
     "servers.service_config.ttft_mss", 'did you mean "ttft_ms"'),
    ("service_config model other than the workload's", edited(SLURM, ("servers", {
        "service_config": {"model": "/weights/llama"}})),
     "servers.service_config.model", "model_path"),
    ("health endpoint of a non-HTTP service", edited(LOCAL, ("workload.service", "redis"),
                                                     ("servers", {"health_check": {"endpoint": "/h"}})),
     "servers.health_check.endpoint", "not an HTTP GET"),
    ("zero health retries", edited(LOCAL, ("servers", {"health_check": {"retries": 0}})),
     "servers.health_check.retries", "failed checks"),
    ("ray settings without ray", edited(SLURM, ("servers", {"service_config": {"distributed": {
        "tensor_parallel_size": 2, "ray": {"num_cpus_per_node": 4}}}})),
     "servers.service_config.distributed.ray", "distributed.enabled is true"),
    ("gpu layers for vllm", edited(SLURM, ("servers", {"service_config": {"gpu_layers": 10}})),
     "servers.service_config.gpu_layers", "vLLM keeps every layer"),
    ("coordinator image", edited(SLURM, ("artifacts.coordinator", {"path": "c.sif"})),
     "artifacts.coordinator", "batch host's Python"),
    ("reference service recipe", edited(LOCAL, ("container_image", "ollama_latest.sif")),
     "container_image", "write instead: artifacts.service.path"),
    ("reference resources", edited(SLURM, ("resources.memory", "16GB")), "resources.memory",
     "mem_gb"),
    ("rate of a burst", edited(LOCAL, ("workload.load", {"pattern": "burst", "burst_size": 4,
                                                          "burst_pause": "1s", "rate": 5})),
     "workload.load.rate", "no rate with pattern 'burst'"),
    ("burstiness of poisson", edited(LOCAL, ("workload.load", {"pattern": "poisson", "rate": 5,
                                                                "burstiness": 0.5})),
     "workload.load.burstiness", "only gamma uses it"),
    ("image remote without a path", edited(SLURM, ("artifacts.executor", {"remote": "docker://x/y"})),
     "artifacts.executor.path", "pulled into"),
    ("shared prefix of a file dataset", edited(LOCAL, ("workload.dataset", {
        "kind": "bundled", "shared_prefix": {"tokens": 64, "count": 2}})),
     "workload.dataset.shared_prefix", "set kind: synthetic"),
    ("shared prefix fractions over 1", edited(LOCAL, ("workload.dataset.shared_prefix", {
        "tokens": 64, "fractions": [0.7, 0.5]})),
     "workload.dataset.shared_prefix.fractions", "add up to 1.2"),
    ("shared prefix fraction per prefix", edited(LOCAL, ("workload.dataset.shared_prefix", {
        "tokens": 64, "count": 3, "fractions": [0.5, 0.2]})),
     "workload.dataset.shared_prefix.fractions", "one fraction per prefix: 3"),
    ("simulator reasoning fraction", edited(LOCAL, ("servers", {"service_config": {
        "reasoning_fraction": 1.5}})),
     "servers.service_config.reasoning_fraction", "a fraction 0..1"),
    ("simulator prefix cache size", edited(LOCAL, ("servers", {"service_config": {
        "prefix_caching": True, "prefix_cache_tokens": 0}})),
     "servers.service_config.prefix_cache_tokens", "an integer >= 1"),
    ("shared prefix without a length", edited(LOCAL, ("workload.dataset.shared_prefix", {
        "count": 2})), "workload.dataset.shared_prefix.tokens", "positive integer"),
]


def test_the_table_is_big_and_distinct():
    assert len(BAD_RECIPES) >= 25
    assert len({case[0] for case in BAD_RECIPES}) == len(BAD_RECIPES)


@pytest.mark.parametrize("name, recipe, path, words", BAD_RECIPES, ids=[c[0] for c in BAD_RECIPES])
def test_bad_recipe_names_path_and_fix(name, recipe, path, words):
    problems = validate(recipe)
    matching = [problem for problem in problems if problem.path == path]
    assert matching, f"no problem at {path}; got {[str(p) for p in problems]}"
    assert any(words in str(problem) for problem in matching), [str(p) for p in matching]


@pytest.mark.parametrize("base", [LOCAL, SLURM], ids=["local", "slurm"])
def test_the_bases_of_the_table_are_valid(base):
    assert validate(base) == []


def test_every_problem_is_reported_at_once():
    recipe = edited(LOCAL, ("workload.duration", "2x"), ("workload.concurency", 3),
                    ("runtime", "docker"), ("workload.load", {"pattern": "poisson"}))
    with pytest.raises(HpcbenchError) as error:
        recipe_from_dict(recipe)
    assert error.value.code == "E006" and error.value.exit_status == 2
    assert "4 problems" in error.value.message
    paths = [line.split(":")[0] for line in error.value.details]
    assert sorted(paths) == ["runtime", "workload.concurency", "workload.duration",
                             "workload.load.rate"]


def test_problem_shows_the_bad_value():
    [problem] = validate(edited(LOCAL, ("workload.duration", "2x")))
    assert str(problem).startswith("workload.duration: got '2x'; expected a duration")


@pytest.mark.parametrize("name", sorted(EXPECTED_TRIALS))
def test_every_example_validates(repo, name):
    recipe = load_recipe(repo / "recipes" / "examples" / name)
    assert count_trials(recipe) == EXPECTED_TRIALS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_TRIALS))
def test_resolved_recipes_are_valid_recipes_too(repo, name):
    """The resolved dict is what runs store with their results; it must load again as is."""
    resolved = load_recipe(repo / "recipes" / "examples" / name).data
    assert validate(resolved) == []


def test_examples_folder_has_exactly_the_documented_examples(repo):
    names = {path.name for path in (repo / "recipes" / "examples").glob("*.yaml")}
    assert names == set(EXPECTED_TRIALS)


def test_defaults_are_resolved_and_durations_are_seconds(repo):
    data = load_recipe(repo / "recipes" / "examples" / "local-sim.yaml").data
    assert data["workload"]["duration"] == 10.0 and data["workload"]["warmup"] == 2.0
    assert data["workload"]["slo"] == {"ttft": 0.5, "itl": 0.05}
    assert data["runtime"] == "process" and data["endpoints"] == []
    assert data["orchestration"]["node_allocation"]["clients"]["executors_per_node"] == 1
    ollama = load_recipe(repo / "recipes" / "examples" / "ollama-single.yaml").data
    assert ollama["runtime"] == "apptainer"  # slurm recipes default to containers
    assert ollama["servers"]["health_check"]["timeout"] == 300.0


def test_default_api_comes_from_the_service():
    ollama = edited(LOCAL, ("workload.service", "ollama"), ("workload.model", "llama2"))
    assert recipe_from_dict(ollama).workload["api"] == "ollama-chat"
    assert recipe_from_dict(LOCAL).workload["api"] == "openai-chat"


def test_seed_example_recipe_validates(tmp_path):
    """The reference's own example (seed 004 section 6.1) is a valid recipe as written."""
    seed = tmp_path / "seed.yaml"
    seed.write_text("""
scenario: "experiment-name"
partition: "gpu"
account: "p200981"
qos: "default"
modules: ["Apptainer"]
repetitions: 1
orchestration:
  mode: "slurm"
  total_nodes: 5
  node_allocation:
    servers: {nodes: 2}
    clients: {nodes: 2, clients_per_node: 10, distribution_strategy: "round-robin"}
    monitors: {nodes: 1}
  job_config: {time_limit: "02:00:00", exclusive: true}
resources:
  servers: {gpus: 2, cpus_per_task: 1, mem_gb: 32}
  clients: {gpus: 0, cpus_per_task: 2, mem_gb: 16}
  monitors: {cpus_per_task: 4, mem_gb: 8}
workload: {component: "inference", service: "ollama", duration: "2m", warmup: "1m",
           model: "llama2", clients_per_node: 10}
servers:
  health_check: {enabled: true, timeout: 300, interval: 5, endpoint: "/api/tags"}
  service_config: {gpu_layers: 0}
artifacts:
  containers_dir: "/path/to/containers/"
  service: {path: "ollama_latest.sif", remote: "docker://ollama/ollama:latest"}
  python: {path: "python_3_12_3_v2.sif", remote: "docker://python:3.12.3-slim"}
binds: ["/project/path/.ollama:/root/.ollama:rw", "/project/path/scratch:/scratch:rw"]
metadata: {seed: 42, git_commit: "abc123def", notes: "experiment notes"}
""")
    recipe = load_recipe(seed)
    assert recipe.workload["clients_per_node"] == 10
    assert recipe.workload["duration"] == 120.0


@pytest.mark.parametrize("text, words", [
    ("scenario: [unclosed", "not valid YAML"),
    ("- just\n- a list", "got ['just', 'a list']"),
    ("scenario: a\nscenario: b\nworkload: {service: simulator, model: m}", "duplicate key"),
])
def test_unusable_files_are_config_errors(tmp_path, text, words):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(HpcbenchError) as error:
        load_recipe(path)
    assert error.value.code == "E006"
    assert words in error.value.render()


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(HpcbenchError) as error:
        load_recipe(tmp_path / "nope.yaml")
    assert error.value.code == "E006" and "not found" in error.value.message


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6),
                                                                      children, max_size=3),
    max_leaves=8)
PATHS = ["workload", "workload.load", "workload.load.rate", "workload.dataset",
         "workload.dataset.input_tokens", "workload.concurrency", "workload.batch", "orchestration",
         "orchestration.node_allocation", "orchestration.node_allocation.servers.nodes",
         "resources", "resources.servers.gpus", "servers", "servers.service_config",
         "servers.service_config.distributed", "endpoints", "partition", "runtime", "scenario"]


@settings(max_examples=150, deadline=None)
@given(path=st.sampled_from(PATHS), value=JSON_VALUES, base=st.sampled_from([LOCAL, SLURM]))
def test_any_malformed_part_gives_problems_not_exceptions(path, value, base):
    problems = validate(edited(base, (path, value)))
    assert all(problem.path is not None and problem.expected for problem in problems)


def test_a_plan_with_more_agents_than_a_coordinator_serves_is_e006():
    """Each executor and monitor holds a control stream for the whole session; beyond what
    the coordinator's server threads hold, agents would be refused mid-start."""
    from hpcbench.common.limits import MAX_AGENTS

    recipe = {"scenario": "big", "orchestration": {
        "mode": "slurm", "total_nodes": 600,
        "node_allocation": {"servers": {"nodes": 1},
                            "clients": {"nodes": 599, "executors_per_node": 8}}},
        "workload": {"service": "simulator", "model": "m"}}
    problems = [problem for problem in validate(recipe)
                if problem.path.endswith("executors_per_node")]
    assert problems and f"at most {MAX_AGENTS}" in str(problems[0])
    recipe["orchestration"]["node_allocation"]["clients"]["executors_per_node"] = 4
    assert not [problem for problem in validate(recipe) if "executors_per_node" in problem.path]
