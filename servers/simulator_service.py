"""The built-in simulator as a service: `hpcbench sim --host H --port P [service_config flags]`.

It speaks OpenAI and Ollama APIs and exposes vLLM-style /metrics, so it is the default target
of local runs and the yardstick for hpcbench's own overhead. Its version (`GET /version`, as vLLM
answers it) is hpcbench's.

service_config: `port` (where it listens), `env` (its environment) and the simulator's own
settings (`mode`, `ttft_ms`, `max_num_seqs`, ...: every `SimulatorConfig` field), each passed
as its flag. Any other key is refused when the recipe is validated (`config_keys`), because
`hpcbench sim` would exit on an unknown flag.

`dummy` is the reference's template service: the simulator in fixed timing mode (every token
on time, no queue) on the reference's port 5000.
"""
from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from hpcbench.servers.plugin import (
    HttpService,
    LaunchContext,
    LaunchSpec,
    cli_flags,
    extra_env,
    ignore_eos_extras,
)
from hpcbench.servers.runtime import hpcbench_image, service_image, wrap
from hpcbench.servers.simulator.config import SimulatorConfig, settings_problems

OWN_KEYS = ("port", "env")            # the listening port and the environment, not flags
# every flag of `hpcbench sim` but --host (the node's address), --port and --port-file (the
# session's): the SimulatorConfig fields, --extra-model (as --extra-models) and the command's
# own --workers and --truth
SIMULATOR_KEYS = (*(spec.name for spec in fields(SimulatorConfig)
                    if spec.name not in ("host", *OWN_KEYS)), "extra_model", "workers", "truth")


def hpcbench_command(runtime: str) -> list[str]:
    """The `hpcbench` CLI: the venv's own script for `process`, the image's PATH otherwise."""
    sibling = Path(sys.executable).with_name("hpcbench")
    if runtime == "process" and sibling.exists():
        return [str(sibling)]
    return ["hpcbench"]


def simulator_image(artifacts: dict, runtime: str) -> str:
    """In a container runtime: `artifacts.service` when the recipe names an image, else an
    image of hpcbench's (the executor's, which has the `hpcbench` command)."""
    service = artifacts.get("service") or {}
    if isinstance(service, dict) and service.get("path"):
        return service_image(artifacts, runtime)
    return hpcbench_image("executor", artifacts, runtime)[0]


class SimulatorService(HttpService):
    name = "simulator"
    default_port = 8000
    api = "openai-chat"
    metrics_path = "/metrics"
    health_paths = ("/health", "/v1/models")
    version_path = "/version"
    config_keys = (*OWN_KEYS, *SIMULATOR_KEYS)
    defaults: dict = {}               # settings a variant (dummy) applies unless the recipe sets them

    def config_problems(self, config: dict) -> list[tuple[str, object, str]]:
        return settings_problems({**self.defaults, **config})

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        config = {**self.defaults, **ctx.service_config}
        if ctx.model and "model" not in config:
            config["model"] = ctx.model
        argv = [*hpcbench_command(ctx.runtime), "sim", "--host", ctx.address,
                "--port", str(ctx.port), *cli_flags(config, skip=OWN_KEYS)]
        return LaunchSpec(argv=wrap(argv, ctx.runtime, ctx.artifacts, ctx.binds, gpus=False,
                                    image=simulator_image(ctx.artifacts, ctx.runtime)),
                          env=extra_env(config), base_url=f"http://{ctx.address}:{ctx.port}")

    def request_extras(self, workload: dict) -> dict:
        return ignore_eos_extras(workload)


class DummyService(SimulatorService):
    """The reference's `dummy` service (its template and test fixture): the simulator with fixed
    timing, so results are exactly predictable: first token `ttft_ms` (20) after arrival, then
    one every `itl_ms` (10), no queue. Port 5000 as in the reference."""

    name = "dummy"
    default_port = 5000
    defaults = {"mode": "fixed"}
