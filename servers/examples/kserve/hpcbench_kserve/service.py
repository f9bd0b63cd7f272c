"""service "kserve-example": hpcbench launches the example server (hpcbench_kserve.server)
and benchmarks it with api "kserve-v2".

service_config: `python` (the interpreter that has this package; default: the coordinator's
own under `runtime: process`, `python3` in the service image under `apptainer`), `env`, and any
flag of the server (`delay: 0.002` -> `--delay 0.002`, `instances: 4` -> `--instances 4`).
`workload.model` is the model it serves.

Health is KServe's `GET /v2/health/ready`, prepare is `GET /v2/models/{model}/ready`, and the
version is the server metadata's (`GET /v2`). `model_ready` and `model_ready_error` are for
any KServe v2 server (the Triton example uses them).
"""
from __future__ import annotations

import json
import sys
from urllib.parse import quote

from hpcbench.common.errors import HpcbenchError
from hpcbench.servers.plugin import HttpService, LaunchContext, LaunchSpec, as_argv, cli_flags, extra_env, http_get
from hpcbench.servers.runtime import wrap

OWN_KEYS = ("port", "python", "env")


def model_ready_error(base_url: str, model: str, timeout_s: float) -> str | None:
    """None when `GET /v2/models/{model}/ready` answers 200, else what the server said."""
    url = f"{base_url.rstrip('/')}/v2/models/{quote(model, safe='')}/ready"
    try:
        status, body = http_get(url, timeout_s)
    except OSError as error:
        return f"GET {url}: {getattr(error, 'reason', error)}"
    if status == 200:
        return None
    try:
        said = json.loads(body).get("error") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        said = body[:200].decode(errors="replace")
    return f"GET {url}: HTTP {status} {said}".rstrip()


def model_ready(service: str, base_url: str, model: str | None, timeout_s: float) -> None:
    """E003 unless the KServe v2 server at `base_url` has `model` ready."""
    if model is None:
        return
    reason = model_ready_error(base_url, model, timeout_s)
    if reason is not None:
        raise HpcbenchError("E003", f"{service} at {base_url} has no model {model!r} ready",
                            (f"last check: {reason}",
                             "fix: set workload.model to a model the server serves (its model "
                             "repository's folder name), and look at the server log in the run "
                             "directory"))


def python_command(ctx: LaunchContext) -> list[str]:
    """`python` of service_config, else this Python for `process` (the plugin is installed
    in it; on Slurm the nodes share it with the batch host) and `python3` in an image."""
    configured = ctx.service_config.get("python")
    if configured:
        return as_argv(configured)
    return [sys.executable] if ctx.runtime == "process" else ["python3"]


class KServeExampleService(HttpService):
    name = "kserve-example"
    default_port = 8000
    api = "kserve-v2"
    metrics_path = None
    health_paths = ("/v2/health/ready",)
    version_path = "/v2"

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        argv = [*python_command(ctx), "-m", "hpcbench_kserve.server",
                "--http-address", ctx.address, "--http-port", str(ctx.port)]
        if ctx.model:
            argv += ["--model", ctx.model]
        argv += cli_flags(ctx.service_config, skip=OWN_KEYS)
        return LaunchSpec(argv=wrap(argv, ctx.runtime, ctx.artifacts, ctx.binds, gpus=False),
                          env=extra_env(ctx.service_config),
                          base_url=f"http://{ctx.address}:{ctx.port}")

    def prepare(self, base_url: str, model: str | None, timeout_s: float,
                service_config: dict | None = None) -> None:
        model_ready(self.name, base_url, model, timeout_s)
