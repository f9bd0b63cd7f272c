"""Service plugins: registry and golden command lines/environments (entry points found by a
separate interpreter: tests/integration/test_services_plugins_processes.py).

Ollama and the Apptainer/GPU forms of vLLM cannot run here (no ollama binary, no apptainer, no
GPU), so their launch commands and environments are checked exactly (golden tests).
"""
from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.servers import ray_cluster
from hpcbench.servers.plugin import LaunchContext, ServicePlugin, cli_flags
from hpcbench.servers.registry import get_service, known_services, launch_commands, launch_contexts

ARTIFACTS = {"containers_dir": "/images", "service": {"path": "vllm_latest.sif"}}
BINDS = ["/scratch/hf:/root/.cache/huggingface:rw"]


def context(service_config: dict, **overrides) -> LaunchContext:
    fields = dict(service_config=service_config, model="meta-llama/Llama-3.1-8B",
                  node="node1", address="10.1.0.11", port=8000, rank=0,
                  server_addresses=["10.1.0.11"], runtime="process", run_dir=Path("/run"),
                  artifacts={}, binds=[], job_id="4242")
    fields.update(overrides)
    return LaunchContext(**fields)


def test_builtins_implement_the_interface():
    assert known_services()[:5] == ["simulator", "ollama", "vllm", "llamacpp", "redis"]
    for name in ("simulator", "ollama", "vllm", "llamacpp", "redis"):
        plugin = get_service(name)
        assert isinstance(plugin, ServicePlugin), name
        assert plugin.name == name
    assert get_service("ollama").api == "ollama-chat"
    assert get_service("redis").api == "resp"
    assert get_service("vllm").metrics_path == "/metrics"


def test_unknown_service_lists_known_names():
    with pytest.raises(HpcbenchError) as caught:
        get_service("tgi")
    assert caught.value.code == "E006"
    assert "'tgi'" in caught.value.message
    assert any("simulator, ollama, vllm, llamacpp, redis" in line
               for line in caught.value.details)


def test_cli_flags_one_argv_element_per_value():
    flags = cli_flags({"max_model_len": 256, "enforce_eager": True, "trust_remote_code": False,
                       "api_key": "a b; rm -rf /", "lora_modules": ["x=1", "y=2"],
                       "skipme": 1, "quantization": None}, skip=("skipme",))
    assert flags == ["--max-model-len", "256", "--enforce-eager", "--api-key", "a b; rm -rf /",
                     "--lora-modules", "x=1", "--lora-modules", "y=2"]
    assert cli_flags({"n_ctx": 512}, dashes=False) == ["--n_ctx", "512"]


# --- Ollama (golden) ---------------------------------------------------------------------------

def test_ollama_launch_in_apptainer_with_ollama_environment():
    ctx = context({"num_parallel": 4, "keep_alive": "30m", "models": "/scratch/ollama",
                   "flash_attention": True, "OLLAMA_DEBUG": 1, "gpu_layers": 99},
                  port=11434, runtime="apptainer",
                  artifacts={"containers_dir": "/images", "service": {"path": "ollama.sif"}},
                  binds=["/p/.ollama:/root/.ollama:rw"])
    spec = get_service("ollama").launch(ctx)
    assert spec.argv == ["apptainer", "exec", "--nv", "--bind", "/p/.ollama:/root/.ollama:rw",
                         "/images/ollama.sif", "ollama", "serve"]
    assert spec.env == {"OLLAMA_HOST": "10.1.0.11:11434", "OLLAMA_NUM_PARALLEL": "4",
                        "OLLAMA_KEEP_ALIVE": "30m", "OLLAMA_MODELS": "/scratch/ollama",
                        "OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_DEBUG": "1"}
    assert spec.base_url == "http://10.1.0.11:11434"


def test_apptainer_without_image_is_a_clear_error():
    with pytest.raises(HpcbenchError) as caught:
        get_service("ollama").launch(context({}, runtime="apptainer"))
    assert caught.value.code == "E006"
    assert "artifacts.service.path" in caught.value.message


# --- vLLM single node (golden) -----------------------------------------------------------------

def test_vllm_single_node_gpu_in_apptainer():
    config = {"max_model_len": 4096, "gpu_memory_utilization": 0.9, "enforce_eager": True,
              "trust_remote_code": False, "tensor_parallel_size": 2,
              "pipeline_parallel_size": 1, "env": {"HF_HUB_OFFLINE": 1}}
    spec = get_service("vllm").launch(context(config, runtime="apptainer", artifacts=ARTIFACTS,
                                              binds=BINDS))
    assert spec.argv == [
        "apptainer", "exec", "--nv", "--bind", BINDS[0], "/images/vllm_latest.sif",
        "vllm", "serve", "meta-llama/Llama-3.1-8B", "--host", "10.1.0.11", "--port", "8000",
        "--max-model-len", "4096", "--gpu-memory-utilization", "0.9", "--enforce-eager",
        "--tensor-parallel-size", "2", "--pipeline-parallel-size", "1"]
    assert spec.env == {"VLLM_HOST_IP": "10.1.0.11", "HF_HUB_OFFLINE": "1"}
    assert spec.base_url == "http://10.1.0.11:8000"


def test_vllm_cpu_form_with_python_module_and_served_name():
    config = {"python": "/opt/vllm/bin/python", "model_path": "/models/tiny",
              "max_model_len": 256, "dtype": "float32"}
    spec = get_service("vllm").launch(context(config, model="tiny", address="127.0.0.1"))
    assert spec.argv == ["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server",
                         "--model", "/models/tiny", "--host", "127.0.0.1", "--port", "8000",
                         "--served-model-name", "tiny", "--max-model-len", "256",
                         "--dtype", "float32"]


def test_vllm_asks_for_ignore_eos_when_lengths_are_fixed():
    vllm = get_service("vllm")
    assert vllm.request_extras({"dataset": {"ignore_eos": True}}) == {"ignore_eos": True}
    assert vllm.request_extras({"dataset": {"ignore_eos": False}}) == {}
    assert get_service("ollama").request_extras({"dataset": {"ignore_eos": True}}) == {}


# --- vLLM over Ray (golden) --------------------------------------------------------------------

RAY_CONFIG = {"distributed": {"enabled": True, "backend": "ray", "tensor_parallel_size": 4,
                              "pipeline_parallel_size": 2,
                              "ray": {"num_gpus_per_node": 4, "num_cpus_per_node": 8}},
              "max_model_len": 2048}
SERVERS = ["10.1.0.11", "10.1.0.12"]


def supervisor_options(argv: list[str]) -> dict:
    """The JSON argv options of a ray_cluster supervisor command line."""
    assert argv[1:3] == ["-m", "hpcbench.servers.ray_cluster"]
    options = {}
    for flag, value in zip(argv[4::2], argv[5::2], strict=True):
        options[flag] = value if flag in ("--head-address", "--timeout") else json.loads(value)
    return options


def test_vllm_ray_head_and_worker_share_node_ip_and_job_ports():
    vllm = get_service("vllm")
    head = vllm.launch(context(RAY_CONFIG, runtime="apptainer", artifacts=ARTIFACTS,
                               binds=BINDS, server_addresses=SERVERS))
    worker = vllm.launch(context(RAY_CONFIG, runtime="apptainer", artifacts=ARTIFACTS,
                                 binds=BINDS, server_addresses=SERVERS, rank=1, node="node2",
                                 address="10.1.0.12"))
    ports = ray_cluster.ray_ports("4242")
    gcs = f"10.1.0.11:{ports.gcs}"
    prefix = ["apptainer", "exec", "--nv", "--bind", BINDS[0], "/images/vllm_latest.sif"]

    assert head.argv[3] == "head" and head.base_url == "http://10.1.0.11:8000"
    options = supervisor_options(head.argv)
    start = options["--ray-start"]
    assert start[:len(prefix)] == prefix
    assert start[len(prefix):len(prefix) + 5] == ["ray", "start", "--block",
                                                  "--node-ip-address", "10.1.0.11"]
    assert "--head" in start and start[start.index("--port") + 1] == str(ports.gcs)
    assert start[start.index("--num-gpus") + 1] == "4"
    wait = options["--wait"]
    assert wait[len(prefix):len(prefix) + 2] == ["python3", "-c"]
    assert wait[-3:] == [gcs, "2", "600.0"]
    assert options["--serve"] == prefix + [
        "vllm", "serve", "meta-llama/Llama-3.1-8B", "--host", "10.1.0.11", "--port", "8000",
        "--max-model-len", "2048", "--tensor-parallel-size", "4",
        "--pipeline-parallel-size", "2", "--distributed-executor-backend", "ray"]
    assert head.env["VLLM_HOST_IP"] == "10.1.0.11" and head.env["RAY_ADDRESS"] == gcs

    assert worker.argv[3] == "worker" and worker.base_url is None
    options = supervisor_options(worker.argv)
    assert options["--head-address"] == gcs
    start = options["--ray-start"]
    assert start[start.index("--node-ip-address") + 1] == "10.1.0.12"
    assert start[start.index("--address") + 1] == gcs and "--head" not in start
    assert worker.env["VLLM_HOST_IP"] == "10.1.0.12"


def test_ray_ports_differ_between_jobs_and_accept_overrides():
    first, second = ray_cluster.ray_ports("1001"), ray_cluster.ray_ports("1002")
    assert first == ray_cluster.ray_ports("1001")
    assert first.gcs != second.gcs and first.min_worker != second.min_worker
    for ports in (first, second):
        values = [v for k, v in vars(ports).items() if k not in ("min_worker", "max_worker")]
        assert len(set(values)) == len(values) and all(1024 < v < 65536 for v in values)
    assert ray_cluster.ray_ports("1001", {"object_manager_port": 8076}).object_manager == 8076
    assert ray_cluster.ray_ports("1001", {"port": 6390}).gcs == 6390   # as `ray start --port`


def test_vllm_rejects_an_unknown_distributed_backend():
    config = {"distributed": {"enabled": True, "backend": "mpi"}}
    with pytest.raises(HpcbenchError) as caught:
        get_service("vllm").launch(context(config, server_addresses=SERVERS))
    assert "backend 'mpi'" in caught.value.message


# --- llama.cpp, simulator, plan --commands ------------------------------------------------------

def test_llamacpp_python_server_and_llama_server_forms():
    plugin = get_service("llamacpp")
    python_form = plugin.launch(context({"model_path": "/m/tiny.gguf", "n_ctx": 512},
                                        model="tiny", port=8080))
    assert python_form.argv == ["python3", "-m", "llama_cpp.server", "--model", "/m/tiny.gguf",
                                "--host", "10.1.0.11", "--port", "8080", "--model_alias",
                                "tiny", "--interrupt_requests", "False", "--n_ctx", "512"]
    native = plugin.launch(context({"model_path": "/m/tiny.gguf", "server": "llama-server",
                                    "ctx_size": 512}, model="tiny", port=8080))
    assert native.argv[:2] == ["llama-server", "--model"] and native.argv[-2:] == [
        "--ctx-size", "512"]
    with pytest.raises(HpcbenchError) as caught:
        plugin.launch(context({}))
    assert "model_path" in caught.value.message


def test_only_llama_server_serves_metrics_and_monitors_scrape_only_it():
    """llama-server starts with --metrics (unless metrics: false) and is scraped at /metrics;
    llama-cpp-python's server has no /metrics: nothing is scraped, and `metrics` set for it
    (or not a boolean) is E006 rather than a key without effect."""
    plugin = get_service("llamacpp")
    native = {"model_path": "/m/tiny.gguf", "server": "llama-server"}
    assert "--metrics" in plugin.launch(context(native)).argv
    assert plugin.metrics_path_for(native) == "/metrics"
    quiet = dict(native, metrics=False)
    assert "--metrics" not in plugin.launch(context(quiet)).argv
    assert plugin.metrics_path_for(quiet) is None
    python_form = {"model_path": "/m/tiny.gguf"}
    assert plugin.metrics_path_for(python_form) is None
    assert "--metrics" not in plugin.launch(context(python_form)).argv
    for config in (dict(python_form, metrics=True), dict(native, metrics="yes")):
        with pytest.raises(HpcbenchError) as caught:
            plugin.launch(context(config))
        assert caught.value.code == "E006" and "service_config.metrics" in caught.value.message
    assert get_service("vllm").metrics_path_for({}) == "/metrics"
    assert get_service("ollama").metrics_path_for({}) is None


def test_launch_commands_render_every_server_node_shell_safe():
    recipe = {"workload": {"service": "vllm", "model": "my model"}, "runtime": "process",
              "servers": {"service_config": dict(RAY_CONFIG, env={"HF_TOKEN": "x y"})}}
    placement = {"servers": ["node1", "node2"],
                 "addresses": {"node1": "10.1.0.11", "node2": "10.1.0.12"}}
    lines = launch_commands(recipe, placement, job_id="77")
    assert lines[0] == "# node1 (rank 0, vllm, process)"
    assert lines[2] == "# node2 (rank 1, vllm, process)"
    words = shlex.split(lines[1])
    assert words[:3] == ["env", "HF_TOKEN=x y", f"RAY_ADDRESS=10.1.0.11:"
                                                f"{ray_cluster.ray_ports('77').gcs}"]
    serve = json.loads(words[words.index("--serve") + 1])
    assert serve[2] == "my model"
    contexts = launch_contexts(recipe, placement, job_id="77")
    assert [c.rank for c in contexts] == [0, 1]
    assert contexts[1].server_addresses == ["10.1.0.11", "10.1.0.12"]


def test_wait_healthy_fails_with_e001_naming_the_url():
    with socket.socket() as holder:  # a port nobody listens on
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    for name, url in (("vllm", f"http://127.0.0.1:{port}"), ("redis", f"redis://127.0.0.1:{port}")):
        with pytest.raises(HpcbenchError) as caught:
            get_service(name).wait_healthy(url, timeout_s=0.3, interval_s=0.1)
        assert caught.value.code == "E001"
        assert f"127.0.0.1:{port}" in caught.value.message
        assert "last check" in caught.value.details[0]


def test_launch_commands_without_deployment_when_endpoints_are_given():
    recipe = {"workload": {"service": "vllm", "model": "m"},
              "endpoints": ["http://10.0.0.5:8000"]}
    assert launch_commands(recipe, {"server_nodes": []}) == [
        "# no server deployed: the recipe benchmarks http://10.0.0.5:8000"]


def test_the_ray_example_pins_no_port_so_two_jobs_on_a_node_do_not_clash(repo):
    from dataclasses import asdict

    from hpcbench.recipes import load_recipe

    recipe = load_recipe(repo / "recipes/examples/vllm-ray-2nodes.yaml")
    ray = recipe.data["servers"]["service_config"]["distributed"]["ray"]
    first, second = ray_cluster.ray_ports("1001", ray), ray_cluster.ray_ports("1002", ray)
    assert not set(asdict(first).values()) & set(asdict(second).values())


# --- what service_config keys do (issue 14) ---------------------------------------------------

def test_simulator_listens_on_the_port_and_gets_env_without_passing_them_as_flags():
    spec = get_service("simulator").launch(context(
        {"port": 9123, "env": {"SIM_MARK": 7}, "mode": "fixed"}, model="m", port=9123))
    assert spec.argv[1:] == ["sim", "--host", "10.1.0.11", "--port", "9123", "--mode", "fixed",
                             "--model", "m"]
    assert spec.env == {"SIM_MARK": "7"} and spec.base_url == "http://10.1.0.11:9123"


def test_dummy_is_the_simulator_with_fixed_timing_on_the_references_port():
    dummy = get_service("dummy")
    assert dummy.default_port == 5000 and dummy.api == "openai-chat"
    argv = dummy.launch(context({}, model="m", port=5000)).argv
    assert argv[1:] == ["sim", "--host", "10.1.0.11", "--port", "5000", "--mode", "fixed",
                        "--model", "m"]
    # the recipe's own settings win over the dummy's
    own = dummy.launch(context({"mode": "model"}, model="m")).argv
    assert own.count("--mode") == 1 and own[own.index("--mode") + 1] == "model"


def test_simulator_under_apptainer_runs_in_an_hpcbench_image(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_SUBMIT_DIR", str(tmp_path))
    sim = get_service("simulator")
    image = lambda artifacts: sim.launch(context({}, runtime="apptainer",  # noqa: E731
                                                 artifacts=artifacts)).argv[2]
    assert image({}) == str(tmp_path / "containers" / "hpcbench-executor.sif")
    assert image({"containers_dir": "/c", "python": {"path": "py.sif"}}) == "/c/py.sif"
    assert image({"containers_dir": "/c", "python": {"path": "py.sif"},
                  "executor": {"path": "ex.sif"}}) == "/c/ex.sif"
    assert image({"containers_dir": "/c", "service": {"path": "sim.sif"}}) == "/c/sim.sif"


def test_vllm_parallel_sizes_of_distributed_reach_a_one_node_command():
    config = {"distributed": {"tensor_parallel_size": 4, "pipeline_parallel_size": 2}}
    argv = get_service("vllm").launch(context(config)).argv
    assert argv[-4:] == ["--tensor-parallel-size", "4", "--pipeline-parallel-size", "2"]
    assert "--distributed-executor-backend" not in argv
    top = get_service("vllm").launch(context({**config, "tensor_parallel_size": 2})).argv
    assert top.count("--tensor-parallel-size") == 1 and "2" == top[top.index(
        "--tensor-parallel-size") + 1]


def test_vllm_distributed_on_one_node_runs_ray_there_as_plan_shows():
    config = {"distributed": {"enabled": True, "tensor_parallel_size": 2,
                              "ray": {"num_gpus_per_node": 2}}}
    head = get_service("vllm").launch(context(config))
    assert head.argv[3] == "head"
    options = supervisor_options(head.argv)
    assert options["--wait"][-2] == "1"         # waits for this one node's raylet
    assert options["--serve"][-4:] == ["--tensor-parallel-size", "2",
                                       "--distributed-executor-backend", "ray"]


def test_llamacpp_takes_gpu_layers_as_its_offload_flag():
    plugin = get_service("llamacpp")
    python_form = plugin.launch(context({"model_path": "/m.gguf", "gpu_layers": 99}))
    assert python_form.argv[-2:] == ["--n_gpu_layers", "99"]
    native = plugin.launch(context({"model_path": "/m.gguf", "server": "llama-server",
                                    "gpu_layers": 20}))
    assert native.argv[-3:] == ["--n-gpu-layers", "20", "--metrics"]   # llama-server: /metrics too
    own = plugin.launch(context({"model_path": "/m.gguf", "gpu_layers": 5, "n_gpu_layers": 7}))
    assert own.argv[-2:] == ["--n_gpu_layers", "7"] and "5" not in own.argv


def test_a_health_endpoint_replaces_the_health_paths_of_http_services_only():
    checked = get_service("vllm").with_health_endpoint("/ready")
    assert checked.health_paths == ("/ready",)
    assert get_service("vllm").health_paths == ("/health", "/v1/models")   # a copy changed
    with pytest.raises(HpcbenchError) as caught:
        get_service("redis").with_health_endpoint("/ready")
    assert caught.value.code == "E006" and "remove servers.health_check.endpoint" in \
        caught.value.render()


def test_service_config_model_does_not_reach_the_command():
    recipe = {"workload": {"service": "vllm", "model": "m"},
              "servers": {"service_config": {"model": "m", "max_model_len": 64}}}
    [ctx] = launch_contexts(recipe, {"servers": ["node1"]})
    assert ctx.service_config == {"max_model_len": 64}


def test_the_simulators_keys_are_the_flags_of_hpcbench_sim():
    """Every key the simulator service takes is a flag `hpcbench sim` has (else the server
    would exit on it), and every flag but those the session sets is a key."""
    import argparse

    from hpcbench.coordinator.cli import sim

    parser = argparse.ArgumentParser()
    sim.configure(parser)
    flags = {action.dest for action in parser._actions if action.dest != "help"}
    keys = set(get_service("simulator").config_keys)
    assert keys - {"env", "extra_model"} == flags - {"host", "port_file"}
    assert "--extra-model" in parser._option_string_actions
