"""llama.cpp: the OpenAI-compatible server of llama-cpp-python or llama.cpp's `llama-server`.

service_config: `model_path` (the GGUF file, required), `server: python|llama-server`
(default python), `metrics` (llama-server: serve /metrics, default true; monitors scrape it),
`python` (interpreter with llama_cpp installed; default python3),
`interrupt_requests` (Python server; default false, so concurrent requests do not cancel each
other), `gpu_layers` (layers to offload, as `--n_gpu_layers` / `--n-gpu-layers`), `env`, and
any server flag (`n_ctx: 512` -> `--n_ctx 512` for the Python server, whose flags
keep underscores; `ctx_size: 512` -> `--ctx-size 512` for llama-server). `workload.model` is the
name clients send (--model_alias / --alias).

Only llama-server has Prometheus metrics (`--metrics`, added unless `metrics: false`):
requests processing and deferred, prompt and generated tokens and the time spent on each,
decode calls, busy slots per decode (monitor/server_metrics.py maps them); llama-cpp-python's
server has no /metrics, so nothing is scraped from it.

Neither server has a version endpoint: llama-server tells its build in `GET /props`
(`build_info`), llama-cpp-python only as its FastAPI app's version in `GET /openapi.json`.
"""
from __future__ import annotations

from hpcbench.common.errors import config_error
from hpcbench.servers.plugin import HttpService, LaunchContext, LaunchSpec, as_argv, cli_flags, extra_env, json_field
from hpcbench.servers.runtime import wrap

OWN_KEYS = ("port", "model_path", "server", "python", "env", "gpu_layers", "metrics")
SERVERS = ("python", "llama-server")


def gpu_layers(config: dict, flag: str) -> list[str]:
    """The recipe's `gpu_layers` (as Ollama spells it) as the server's own flag, unless the
    recipe also gives that flag's key."""
    if config.get("gpu_layers") is None or flag.lstrip("-").replace("-", "_") in config:
        return []
    return [flag, str(config["gpu_layers"])]


class LlamaCppService(HttpService):
    name = "llamacpp"
    default_port = 8080
    api = "openai-chat"
    metrics_path = None  # llama-cpp-python has no /metrics; llama-server: metrics_path_for
    health_paths = ("/v1/models",)

    def metrics_path_for(self, service_config: dict) -> str | None:
        """/metrics for llama-server (started with --metrics unless `metrics: false`);
        None for llama-cpp-python's server, which has none."""
        if service_config.get("server", "python") == "llama-server" \
                and service_config.get("metrics", True) is not False:
            return "/metrics"
        return None

    def server_version(self, base_url: str, timeout_s: float) -> str | None:
        """Which server answers, with its version: "llama-server BUILD" or
        "llama-cpp-python VERSION"."""
        build = json_field(base_url, "/props", ("build_info",), timeout_s)
        if build:
            return f"llama-server {build}"
        version = json_field(base_url, "/openapi.json", ("info", "version"), timeout_s)
        return f"llama-cpp-python {version}" if version else None

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        config = ctx.service_config
        model_path = config.get("model_path")
        if not model_path:
            raise config_error("llamacpp needs servers.service_config.model_path",
                               ["fix: set model_path to a .gguf file readable on the server "
                                "node"])
        server = config.get("server", "python")
        if "metrics" in config and (server != "llama-server"
                                    or not isinstance(config["metrics"], bool)):
            raise config_error(
                f"servers.service_config.metrics {config['metrics']!r} does nothing here: only "
                "llama-server serves /metrics, and it takes true or false",
                ["fix: remove `metrics`, or set server: llama-server and metrics: true "
                 "(the default) or false (llama-cpp-python's server has no /metrics)"])
        if server == "python":
            argv = [*as_argv(config.get("python", "python3")), "-m", "llama_cpp.server",
                    "--model", str(model_path), "--host", ctx.address, "--port", str(ctx.port)]
            if ctx.model:
                argv += ["--model_alias", ctx.model]
            # By default a new request interrupts the one streaming: concurrent clients would
            # measure each other's resets, so it is off unless the recipe turns it on.
            interrupt = bool(config.get("interrupt_requests", False))
            argv += ["--interrupt_requests", str(interrupt)]
            argv += gpu_layers(config, "--n_gpu_layers")
            argv += cli_flags(config, skip=(*OWN_KEYS, "interrupt_requests"), dashes=False)
        elif server == "llama-server":
            argv = ["llama-server", "--model", str(model_path), "--host", ctx.address,
                    "--port", str(ctx.port)]
            if ctx.model:
                argv += ["--alias", ctx.model]
            argv += gpu_layers(config, "--n-gpu-layers")
            if self.metrics_path_for(config):
                argv += ["--metrics"]
            argv += cli_flags(config, skip=OWN_KEYS)
        else:
            raise config_error(f"servers.service_config.server {server!r} is not known",
                               [f"fix: use one of {', '.join(SERVERS)}"])
        return LaunchSpec(argv=wrap(argv, ctx.runtime, ctx.artifacts, ctx.binds),
                          env=extra_env(config), base_url=f"http://{ctx.address}:{ctx.port}")
