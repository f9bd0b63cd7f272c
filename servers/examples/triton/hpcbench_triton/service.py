"""service "triton": NVIDIA Triton Inference Server (a TensorRT engine, or any backend), spoken
to with the KServe v2 protocol of the hpcbench-kserve-example package (api "kserve-v2").

Launch, per node and runtime: `tritonserver --model-repository REPO --model-control-mode
explicit --load-model MODEL` on the node's address, its HTTP port the service's, gRPC and
metrics on the two ports after it (so two jobs on one node do not collide); under
`runtime: apptainer` inside the recipe's image (e.g. docker://nvcr.io/nvidia/tritonserver) with
`--nv`. Health is `GET /v2/health/ready`; prepare waits for `GET /v2/models/MODEL/ready`,
then applies the model settings below through Triton's model repository API (read the loaded
configuration with `GET /v2/models/MODEL/config`, change it, load the model again with
`POST /v2/repository/models/MODEL/load {"parameters": {"config": ...}}`) and checks that the
server reports them.

service_config (anything else becomes a tritonserver flag, `log_verbose: 1` ->
`--log-verbose 1`):
- `model_repository` (default /models: bind the host's folder there with `binds`);
- `max_batch_size` (>= 0), `instance_group_count` (>= 1), `dynamic_batching` (true, false or
  Triton's dynamic_batching settings, e.g. {max_queue_delay_microseconds: 100}): the model's
  configuration for the benchmark;
- `backend` (e.g. tensorrt): prepare fails (E003) unless the model is served by it;
- `tritonserver` (the program, a word or a list; default tritonserver), `grpc_port`,
  `metrics_port`, `env`, `port`.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import quote

from hpcbench_kserve.service import model_ready

from hpcbench.common.errors import HpcbenchError, config_error
from hpcbench.servers.plugin import HttpService, LaunchContext, LaunchSpec, as_argv, cli_flags, extra_env, http_get
from hpcbench.servers.runtime import wrap

OWN_KEYS = ("port", "env", "tritonserver", "model_repository", "grpc_port", "metrics_port",
            "max_batch_size", "instance_group_count", "dynamic_batching", "backend")
MODEL_KEYS = ("max_batch_size", "instance_group_count", "dynamic_batching")
WHERE = "servers.service_config"


def _integer(config: dict, key: str, minimum: int, default=None):
    value = config.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or
                              value < minimum or value > 2**31 - 1):
        raise config_error(f"{WHERE}.{key}={value!r}: expected an integer >= {minimum}",
                           [f"fix: e.g. {key}: {max(minimum, 8)}"])
    return value


def check_config(config: dict) -> None:
    """E006 naming the key for a value of the plugin's own keys that cannot work."""
    for key, minimum in (("max_batch_size", 0), ("instance_group_count", 1),
                         ("grpc_port", 1), ("metrics_port", 1)):
        _integer(config, key, minimum)
    dynamic = config.get("dynamic_batching")
    if dynamic is not None and not isinstance(dynamic, (bool, dict)):
        raise config_error(f"{WHERE}.dynamic_batching={dynamic!r}: expected true, false or "
                           "Triton's settings", ["fix: e.g. dynamic_batching: "
                                                 "{max_queue_delay_microseconds: 100}"])
    for key in ("model_repository", "backend"):
        if key in config and (not isinstance(config[key], str) or not config[key]):
            raise config_error(f"{WHERE}.{key}={config[key]!r}: expected a non-empty string")


def model_settings(loaded: dict, config: dict) -> dict:
    """The model configuration `loaded` with the recipe's settings applied."""
    wanted = dict(loaded)
    if "max_batch_size" in config:
        wanted["max_batch_size"] = config["max_batch_size"]
    if "instance_group_count" in config:
        groups = [dict(group) for group in loaded.get("instance_group") or [{}]]
        groups[0]["count"] = config["instance_group_count"]
        wanted["instance_group"] = groups[:1]
    dynamic = config.get("dynamic_batching")
    if dynamic is True:
        wanted.setdefault("dynamic_batching", {})
    elif dynamic is False:
        wanted.pop("dynamic_batching", None)
    elif isinstance(dynamic, dict):
        wanted["dynamic_batching"] = dynamic
    return wanted


def _differences(wanted: dict, served: dict) -> list[str]:
    keys = ["max_batch_size", "dynamic_batching"]
    found = [f"{key}: {served.get(key)!r}, not {wanted.get(key)!r}" for key in keys
             if (key in wanted or key in served) and wanted.get(key) != served.get(key)]
    count = lambda config: ((config.get("instance_group") or [{}])[0]).get("count")  # noqa: E731
    if count(wanted) != count(served):
        found.append(f"instance_group[0].count: {count(served)!r}, not {count(wanted)!r}")
    return found


class TritonService(HttpService):
    name = "triton"
    default_port = 8000
    api = "kserve-v2"
    # Triton serves Prometheus metrics on its metrics port, not on the HTTP port hpcbench's
    # monitors append metrics_path to: no scraping (see the README)
    metrics_path = None
    health_paths = ("/v2/health/ready",)
    version_path = "/v2"

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        config = ctx.service_config
        check_config(config)
        if not ctx.model:
            raise config_error("triton needs workload.model: the model repository folder to "
                               "load and benchmark")
        argv = [*as_argv(config.get("tritonserver", "tritonserver")),
                "--model-repository", config.get("model_repository", "/models"),
                "--model-control-mode", "explicit", "--load-model", ctx.model,
                "--http-address", ctx.address, "--http-port", str(ctx.port),
                "--grpc-address", ctx.address,
                "--grpc-port", str(config.get("grpc_port", ctx.port + 1)),
                "--metrics-address", ctx.address,
                "--metrics-port", str(config.get("metrics_port", ctx.port + 2)),
                *cli_flags(config, skip=OWN_KEYS)]
        return LaunchSpec(argv=wrap(argv, ctx.runtime, ctx.artifacts, ctx.binds, gpus=True),
                          env=extra_env(config), base_url=f"http://{ctx.address}:{ctx.port}")

    def prepare(self, base_url: str, model: str | None, timeout_s: float,
                service_config: dict | None = None) -> None:
        config = service_config or {}
        check_config(config)
        model_ready(self.name, base_url, model, timeout_s)
        if model is None:
            return
        served = self._model_config(base_url, model, timeout_s)
        if any(key in config for key in MODEL_KEYS):
            wanted = model_settings(served, config)
            self._load(base_url, model, wanted, timeout_s)
            model_ready(self.name, base_url, model, timeout_s)
            served = self._model_config(base_url, model, timeout_s)
            differences = _differences(wanted, served)
            if differences:
                raise HpcbenchError("E003", f"triton at {base_url} did not apply the model "
                                    f"settings of {model!r}: {'; '.join(differences)}",
                                    ("fix: check the server log; a TensorRT engine built for "
                                     "a smaller batch cannot take a larger max_batch_size",))
        backend = config.get("backend")
        if backend is not None:
            platform = str(served.get("platform") or "")
            names = {str(served.get("backend") or ""), platform, platform.split("_")[0]}
            if backend not in names:
                raise HpcbenchError("E003", f"triton at {base_url} serves {model!r} with "
                                    f"backend {served.get('backend')!r} (platform "
                                    f"{platform!r}), not {backend!r}",
                                    ("fix: set servers.service_config.backend to the model's, "
                                     "or point model_repository at the model built for it",))

    def _model_config(self, base_url: str, model: str, timeout_s: float) -> dict:
        url = f"{base_url.rstrip('/')}/v2/models/{quote(model, safe='')}/config"
        try:
            status, body = http_get(url, timeout_s)
            config = json.loads(body) if status == 200 else None
            if not isinstance(config, dict):
                raise ValueError(f"HTTP {status}: {body[:200].decode(errors='replace')}")
        except (OSError, ValueError) as error:
            raise HpcbenchError("E003", f"cannot read the configuration of {model!r}: GET "
                                f"{url}: {error}", ("fix: check the server log",)) from error
        return config

    def _load(self, base_url: str, model: str, wanted: dict, timeout_s: float) -> None:
        url = f"{base_url.rstrip('/')}/v2/repository/models/{quote(model, safe='')}/load"
        body = json.dumps({"parameters": {"config": json.dumps(wanted)}}).encode()
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "hpcbench"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s):
                return
        except urllib.error.HTTPError as error:
            said = error.read()[:300].decode(errors="replace")
            reason = f"HTTP {error.code} {said}"
        except OSError as error:
            reason = str(getattr(error, "reason", error))
        raise HpcbenchError("E003", f"triton at {base_url} could not load {model!r} with the "
                            f"recipe's model settings: POST {url}: {reason}",
                            ("fix: check max_batch_size, instance_group_count and "
                             "dynamic_batching against the model, and the server log",))
