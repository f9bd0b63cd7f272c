"""The built-in simulator as a service: `hpcbench sim --host H --port P [service_config flags]`.

It speaks OpenAI and Ollama APIs and exposes vLLM-style /metrics, so it is the default target
of local runs and the yardstick for hpcbench's own overhead. Its version (`GET /version`, as vLLM
answers it) is hpcbench's.
"""
from __future__ import annotations

import sys
from pathlib import Path

from hpcbench.servers.plugin import HttpService, LaunchContext, LaunchSpec, cli_flags, ignore_eos_extras
from hpcbench.servers.runtime import wrap


def hpcbench_command(runtime: str) -> list[str]:
    """The `hpcbench` CLI: the venv's own script for `process`, the image's PATH otherwise."""
    sibling = Path(sys.executable).with_name("hpcbench")
    if runtime == "process" and sibling.exists():
        return [str(sibling)]
    return ["hpcbench"]


class SimulatorService(HttpService):
    name = "simulator"
    default_port = 8000
    api = "openai-chat"
    metrics_path = "/metrics"
    health_paths = ("/health", "/v1/models")
    version_path = "/version"

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        config = dict(ctx.service_config)
        if ctx.model and "model" not in config:
            config["model"] = ctx.model
        argv = [*hpcbench_command(ctx.runtime), "sim", "--host", ctx.address,
                "--port", str(ctx.port), *cli_flags(config)]
        return LaunchSpec(argv=wrap(argv, ctx.runtime, ctx.artifacts, ctx.binds, gpus=False),
                          base_url=f"http://{ctx.address}:{ctx.port}")

    def request_extras(self, workload: dict) -> dict:
        return ignore_eos_extras(workload)

