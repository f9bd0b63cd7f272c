"""The service plugin interface: how hpcbench launches, checks and prepares a server under test.

A plugin is one small class per service (simulator, ollama, vllm, llamacpp, redis, or a third
party's through the `hpcbench.services` entry-point group). The coordinator, `run.sbatch` and
`hpcbench plan --commands` all go through the same three steps:

1. `launch(ctx) -> LaunchSpec` once per server node: the argv and environment to start there
   (already wrapped for the runtime: `process` runs the binary, `apptainer` and `podman` run
   it in the recipe's image, servers/runtime.py). Every value is its own argv element; nothing is a shell string.
2. `wait_healthy(base_url, timeout_s, interval_s)` polls until the server answers (E001).
3. `prepare(base_url, model, timeout_s, service_config)` pulls/loads/checks the model (E003).

Every plugin subclasses `ServicePlugin`, which declares those three as abstract and the optional
hooks with their defaults: `request_extras(workload)` (JSON fields added to every request, none by
default) and `server_version(base_url, timeout_s)` (the server's own version, recorded once after
health for the report's environment; None, the default, is recorded as "unknown").
`HttpService` below implements 2 and 3 for HTTP servers from a list of health paths, and the
version from `version_path`, so most plugins only write `launch`.
"""
from __future__ import annotations

import copy
import json
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from hpcbench.common.errors import HpcbenchError, config_error


@dataclass
class LaunchContext:
    """Everything a plugin needs to build the command for one server node."""

    service_config: dict
    model: str | None
    node: str                      # Slurm node name (or "localhost")
    address: str                   # the node's cluster address the server binds to
    port: int
    rank: int = 0                  # 0 = head (the node clients talk to)
    server_addresses: list[str] = field(default_factory=list)  # all server nodes, head first
    runtime: str = "process"       # "process" | "apptainer" | "podman"
    run_dir: Path = Path(".")
    artifacts: dict = field(default_factory=dict)   # recipe `artifacts` (container images)
    binds: list[str] = field(default_factory=list)  # recipe `binds` (apptainer --bind)
    job_id: str | None = None      # Slurm job id; seeds per-job port choices
    health_timeout_s: float = 600.0  # servers.health_check.timeout (a Ray head waits as long)

    @property
    def is_head(self) -> bool:
        return self.rank == 0


@dataclass
class LaunchSpec:
    """What to run on one node: argv (no shell), extra environment, and the head's URL."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    base_url: str | None = None    # None on non-head ranks (nobody sends requests there)


class ServicePlugin(ABC):
    """The interface every service implements (docs/services.md): subclass it, set the four
    attributes, write the three abstract steps; override a hook only to change its default."""

    name: str = ""
    default_port: int = 8000
    api: str = "openai-chat"             # executor protocol: openai-chat, ollama-chat, resp, ...
    metrics_path: str | None = None      # Prometheus exposition path on the server, for monitors
    # servers.service_config keys the service takes; None: any (they become its flags or
    # variables). With a tuple, `hpcbench validate` refuses other keys naming these.
    config_keys: tuple[str, ...] | None = None
    # service_config keys the recipe schema documents but this service has no use for, each
    # with what to write instead (`hpcbench validate` refuses them)
    refused_keys: dict[str, str] = {}
    # HTTP paths its health check GETs (each must answer 200); None: its health check is not
    # an HTTP GET, so servers.health_check.endpoint is refused for it
    health_paths: tuple[str, ...] | None = None

    def config_problems(self, config: dict) -> list[tuple[str, object, str]]:
        """(key, value, what is expected) for each `servers.service_config` value this service
        would refuse at start, so `hpcbench validate` says so first (key names are checked
        through `config_keys` and `refused_keys`). None by default."""
        return []

    @abstractmethod
    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        """The argv and environment that start the server on one node."""

    @abstractmethod
    def wait_healthy(self, base_url: str, timeout_s: float, interval_s: float) -> None:
        """Return once the server answers; E001 naming the last check after `timeout_s`.
        It checks at least once, even when `timeout_s` is 0: a session calls it once per
        check with 0 and paces the checks itself (servers.health_check.interval, retries)."""

    @abstractmethod
    def prepare(self, base_url: str, model: str | None, timeout_s: float,
                service_config: dict | None = None) -> None:
        """Make `model` ready on the healthy server (pull, load or check it); E003 if not."""

    def request_extras(self, workload: dict) -> dict:
        """Top-level JSON fields the executor adds to every request of this service."""
        return {}

    def with_health_endpoint(self, path: str) -> "ServicePlugin":
        """This service with its health check at `path` (servers.health_check.endpoint)
        instead of its own `health_paths`; E006 for a service whose check is not an HTTP GET."""
        if self.health_paths is None:
            raise config_error(f"servers.health_check.endpoint {path!r}: the {self.name} "
                               "service's health check is not an HTTP path",
                               ["fix: remove servers.health_check.endpoint (the service checks "
                                "its health its own way)"])
        checked = copy.copy(self)
        checked.health_paths = (path,)
        return checked

    def server_version(self, base_url: str, timeout_s: float) -> str | None:
        """The server's own version string, or None when it does not say."""
        return None

    def metrics_path_for(self, service_config: dict) -> str | None:
        """Where the server, configured with `service_config`, serves Prometheus metrics
        (None: nowhere, nobody scrapes it). Default: `metrics_path`."""
        return self.metrics_path


def http_get(url: str, timeout_s: float) -> tuple[int, bytes]:
    """GET `url`; return (status, body). Network failures raise OSError (URLError is one)."""
    request = urllib.request.Request(url, headers={"User-Agent": "hpcbench"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def json_field(base_url: str, path: str, keys: tuple[str, ...], timeout_s: float) -> str | None:
    """The text at `keys` in the JSON that GET `path` answers; None on any failure (the server
    does not have the path, is gone, or answers something else)."""
    try:
        status, body = http_get(base_url.rstrip("/") + path, timeout_s)
        value = json.loads(body) if status == 200 else None
        for key in keys:
            value = value[key]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return str(value) if value not in (None, "") else None


def recorded_server_version(service: ServicePlugin, base_url: str, timeout_s: float) -> str:
    """The plugin's `server_version`, "unknown" when it returns None or fails: the version is
    recorded for the report, never a reason to fail a benchmark."""
    try:
        found = service.server_version(base_url, timeout_s)
    except Exception:  # a third-party hook's bug
        found = None
    return str(found) if found else "unknown"


def http_post_json(url: str, body: dict, timeout_s: float):
    """POST a JSON body; return the open response (caller reads/streams and closes it)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "hpcbench"})
    return urllib.request.urlopen(request, timeout=timeout_s)


def poll_until(check, timeout_s: float, interval_s: float) -> str | None:
    """Call `check()` (returns None when done, else why not yet) until done or the deadline.

    Returns None on success, else the last reason, so callers build a precise error.
    """
    pause = threading.Event()
    deadline = time.monotonic() + timeout_s
    while True:
        reason = check()
        if reason is None:
            return None
        if time.monotonic() >= deadline:
            return reason
        pause.wait(min(interval_s, max(0.0, deadline - time.monotonic())))


class HttpService(ServicePlugin):
    """Defaults for HTTP services: health = every path in `health_paths` answers 200,
    prepare = the model is listed by `/v1/models` (OpenAI-compatible servers)."""

    name = "http"
    default_port = 8000
    api = "openai-chat"
    metrics_path: str | None = "/metrics"
    health_paths: tuple[str, ...] | None = ("/health",)
    version_path: str | None = None   # answers {"version": ...}; None: the server does not say

    def wait_healthy(self, base_url: str, timeout_s: float, interval_s: float = 1.0) -> None:
        def check() -> str | None:
            for path in self.health_paths or ():
                url = base_url.rstrip("/") + path
                try:
                    status, _ = http_get(url, timeout_s=max(1.0, interval_s))
                except OSError as error:
                    return f"GET {url}: {getattr(error, 'reason', error)}"
                if status != 200:
                    return f"GET {url}: HTTP {status}"
            return None

        reason = poll_until(check, timeout_s, interval_s)
        if reason is not None:
            raise HpcbenchError(
                "E001", f"{self.name} server at {base_url} not healthy after {timeout_s:g}s",
                (f"last check: {reason}",
                 "fix: look at the server log in the run directory; raise "
                 "servers.health_check.timeout if the model loads slowly, and check "
                 "servers.health_check.endpoint if the recipe sets one"))

    def server_version(self, base_url: str, timeout_s: float) -> str | None:
        """`version` of the JSON at `version_path` (None without one)."""
        if self.version_path is None:
            return None
        return json_field(base_url, self.version_path, ("version",), timeout_s)

    def prepare(self, base_url: str, model: str | None, timeout_s: float,
                service_config: dict | None = None) -> None:
        if model is None:
            return
        served = openai_models(base_url, timeout_s)
        if model not in served:
            raise HpcbenchError(
                "E003", f"{self.name} at {base_url} does not serve model {model!r}",
                (f"served models: {', '.join(served) or 'none'}",
                 "fix: set workload.model to one of them (or the server's "
                 "--served-model-name)"))


def openai_models(base_url: str, timeout_s: float) -> list[str]:
    """Model ids from an OpenAI-compatible `/v1/models` (E003 when unreachable or malformed)."""
    url = base_url.rstrip("/") + "/v1/models"
    try:
        status, body = http_get(url, timeout_s=timeout_s)
        if status != 200:
            raise ValueError(f"HTTP {status}")
        return [entry["id"] for entry in json.loads(body)["data"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise HpcbenchError("E003", f"cannot list models at {url}: {error}",
                            ("fix: check the server log; the server must be OpenAI-compatible",)
                            ) from error


def cli_flags(config: dict, skip: tuple[str, ...] = (), dashes: bool = True) -> list[str]:
    """Turn service_config entries into command-line flags, each value its own argv element.

    `max_model_len: 256` -> `--max-model-len 256`; `true` -> bare flag; `false`/None -> omitted;
    a list -> the flag repeated. Keys in `skip` are handled by the plugin itself. `dashes=False`
    keeps underscores (`--n_ctx`) for programs that spell flags that way.
    """
    argv: list[str] = []
    for key, value in config.items():
        if key in skip or value is None or value is False:
            continue
        flag = "--" + (str(key).replace("_", "-") if dashes else str(key))
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [flag, str(item)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv


def ignore_eos_extras(workload: dict) -> dict:
    """`{"ignore_eos": true}` when the workload asks for exact output lengths
    (dataset.ignore_eos, default true), for servers that honour the field (vLLM, simulator),
    so each request produces exactly its sampled number of tokens."""
    dataset = workload.get("dataset") or {}
    return {"ignore_eos": True} if dataset.get("ignore_eos", True) else {}


def extra_env(config: dict) -> dict[str, str]:
    """service_config `env: {NAME: value}`: extra variables for the server process."""
    env = config.get("env") or {}
    if not isinstance(env, dict):
        raise HpcbenchError("E006", f"servers.service_config.env must be a mapping, got {env!r}",
                            ("fix: write env as NAME: value lines, e.g. HF_HUB_OFFLINE: 1",))
    return {str(key): str(value) for key, value in env.items()}


def as_argv(value: str | list) -> list[str]:
    """A command from service_config: a list of words, or one word (a path or program name)."""
    return [str(word) for word in value] if isinstance(value, (list, tuple)) else [str(value)]
