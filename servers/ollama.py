"""Ollama: `ollama serve` configured by OLLAMA_* environment variables from service_config.

Health is `GET /` ("Ollama is running") then `/api/tags`. Prepare pulls the model when the
server does not have it yet (streamed progress lines), then loads it with an empty generate
that sets keep_alive, so the first measured request does not pay the load time. The server's
version is `GET /api/version` ({"version": "0.12.6"}).
"""
from __future__ import annotations

import json
import logging
import sys
import urllib.error

from hpcbench.common.errors import HpcbenchError
from hpcbench.servers.plugin import HttpService, LaunchContext, LaunchSpec, extra_env, http_get, http_post_json
from hpcbench.servers.runtime import wrap

log = logging.getLogger(__name__)

# service_config keys that are not OLLAMA_* variables.
NON_ENV_KEYS = ("port", "gpu_layers", "env")
DEFAULT_KEEP_ALIVE = -1  # keep the model loaded for the whole benchmark (a number: seconds)


def env_value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def ollama_env(config: dict, address: str, port: int) -> dict[str, str]:
    """OLLAMA_* variables: `num_parallel: 4` -> OLLAMA_NUM_PARALLEL=4; OLLAMA_HOST from the node."""
    env = {"OLLAMA_HOST": f"{address}:{port}"}
    for key, value in config.items():
        if key in NON_ENV_KEYS or value is None:
            continue
        name = key.upper()
        env[name if name.startswith("OLLAMA_") else "OLLAMA_" + name] = env_value(value)
    env.update(extra_env(config))
    return env


class OllamaService(HttpService):
    name = "ollama"
    default_port = 11434
    api = "ollama-chat"
    metrics_path = None  # Ollama has no Prometheus endpoint
    health_paths = ("/", "/api/tags")
    version_path = "/api/version"

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        return LaunchSpec(argv=wrap(["ollama", "serve"], ctx.runtime, ctx.artifacts, ctx.binds),
                          env=ollama_env(ctx.service_config, ctx.address, ctx.port),
                          base_url=f"http://{ctx.address}:{ctx.port}")

    def prepare(self, base_url: str, model: str | None, timeout_s: float,
                service_config: dict | None = None) -> None:
        if model is None:
            raise HpcbenchError("E003", "ollama needs a model to prepare",
                                ("fix: set workload.model, e.g. llama3.2:1b",))
        if model not in local_models(base_url, timeout_s):
            pull(base_url, model, timeout_s)
        load(base_url, model, timeout_s, service_config or {})

    def request_extras(self, workload: dict) -> dict:
        return {}  # Ollama has no ignore_eos; num_predict bounds the length


def local_models(base_url: str, timeout_s: float) -> set[str]:
    """Names (with and without the implicit `:latest`) the server already has."""
    try:
        status, body = http_get(base_url.rstrip("/") + "/api/tags", timeout_s)
        names = {m["name"] for m in json.loads(body)["models"]} if status == 200 else set()
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return names | {name.removesuffix(":latest") for name in names}


def pull(base_url: str, model: str, timeout_s: float, out=sys.stderr) -> None:
    """`POST /api/pull` streaming; print progress; E003 on an error line or a broken stream."""
    url = base_url.rstrip("/") + "/api/pull"
    last_status = ""
    try:
        with http_post_json(url, {"model": model, "stream": True}, timeout_s) as response:
            for line in response:
                if not line.strip():
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise HpcbenchError("E003", f"ollama could not pull {model!r}: "
                                        f"{event['error']}",
                                        ("fix: check the model name on ollama.com/library, or "
                                         "pre-pull it into OLLAMA_MODELS on an online node",))
                status = event.get("status", "")
                if event.get("total"):
                    percent = 100.0 * event.get("completed", 0) / event["total"]
                    status = f"{status} {percent:.0f}%"
                if status != last_status:
                    print(f"ollama pull {model}: {status}", file=out)
                    last_status = status
    except HpcbenchError:
        raise
    except (OSError, ValueError) as error:
        raise HpcbenchError("E003", f"ollama pull of {model!r} failed: {error}",
                            (f"url: {url}", "fix: check the server log and its network")) \
            from error
    if not last_status.startswith("success"):
        raise HpcbenchError("E003", f"ollama pull of {model!r} ended without success "
                            f"(last status: {last_status or 'none'})",
                            ("fix: retry; check disk space in OLLAMA_MODELS",))


def keep_alive_value(value):
    """keep_alive as Ollama's API takes it: a number is seconds (negative: forever), a string
    must be a Go duration ("30m", "1h"). A bare number written as text ("-1", "300"), as YAML
    or an environment variable may give it, becomes a number: Ollama would reject it as a
    duration without a unit."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    return value


def _error_text(error: "urllib.error.HTTPError") -> str:
    """The `error` field of an Ollama error reply, else the HTTP status line."""
    try:
        return json.loads(error.read())["error"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"HTTP {error.code} {error.reason}"


def load(base_url: str, model: str, timeout_s: float, config: dict) -> None:
    """Load the model into memory: a generate without prompt, with keep_alive."""
    body: dict = {"model": model, "stream": False,
                  "keep_alive": keep_alive_value(config.get("keep_alive", DEFAULT_KEEP_ALIVE))}
    if config.get("gpu_layers") is not None:
        body["options"] = {"num_gpu": config["gpu_layers"]}
    try:
        with http_post_json(base_url.rstrip("/") + "/api/generate", body, timeout_s) as response:
            reply = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:      # Ollama says why in {"error": ...}
        reply = {"error": _error_text(error)}
    except (OSError, ValueError) as error:
        raise HpcbenchError("E003", f"ollama could not load {model!r}: {error}",
                            ("fix: check the server log (memory, GPU layers)",)) from error
    if "error" in reply:
        raise HpcbenchError("E003", f"ollama could not load {model!r}: {reply['error']}",
                            ("fix: check the server log (memory, GPU layers)",))
