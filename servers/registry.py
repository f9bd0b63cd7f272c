"""Find service plugins by name: the built-ins plus the `hpcbench.services` entry-point group.

A third-party package adds a service with, in its pyproject.toml:

    [project.entry-points."hpcbench.services"]
    myservice = "mypkg.service:MyService"

The entry point names a class (instantiated without arguments) or an instance. This module also
turns a recipe and a node placement into per-node launch contexts and rendered shell lines
(`hpcbench plan --commands`, run.sbatch).
"""
from __future__ import annotations

import shlex
from pathlib import Path

from hpcbench.common.plugins import PluginRegistry
from hpcbench.servers.plugin import LaunchContext, LaunchSpec, ServicePlugin

REGISTRY = PluginRegistry(
    group="hpcbench.services", kind="service", field="workload.service", bases=(ServicePlugin,),
    how_to="subclass hpcbench.servers.plugin.ServicePlugin (or HttpService) and write launch, "
           "wait_healthy and prepare (docs/services.md)",
    builtins={
        "simulator": "hpcbench.servers.simulator_service:SimulatorService",
        "ollama": "hpcbench.servers.ollama:OllamaService",
        "vllm": "hpcbench.servers.vllm:VllmService",
        "llamacpp": "hpcbench.servers.llamacpp:LlamaCppService",
        "redis": "hpcbench.servers.redis:RedisService",
        "dummy": "hpcbench.servers.simulator_service:DummyService",
    })
ENTRY_POINT_GROUP = REGISTRY.group


def known_services() -> list[str]:
    """Every service name get_service accepts, built-ins first."""
    return REGISTRY.names()


def get_service(name: str) -> ServicePlugin:
    """The plugin for `name` (built-in first, then entry points); E006 listing known names."""
    return REGISTRY.load(name)


def _recipe_data(recipe) -> dict:
    return recipe.data if hasattr(recipe, "data") else recipe


def _server_nodes(placement) -> list[tuple[str, str]]:
    """(node name, address) of each server node, head first, from a Placement or a dict."""
    get = (lambda key: placement.get(key)) if isinstance(placement, dict) else (
        lambda key: getattr(placement, key, None))
    nodes = get("server_nodes") or get("servers") or []
    addresses = get("addresses") or {}
    pairs = []
    for node in nodes:
        name = getattr(node, "name", node)
        address = getattr(node, "address", None) or addresses.get(name, name)
        pairs.append((str(name), str(address)))
    return pairs


def launch_contexts(recipe, placement, run_dir: str | Path = ".",
                    job_id: str | None = None) -> list[LaunchContext]:
    """One LaunchContext per server node (rank 0 = head) for the recipe's service."""
    data = _recipe_data(recipe)
    workload = data.get("workload") or {}
    servers = data.get("servers") or {}
    service_config = dict(servers.get("service_config") or {})
    # `model` may only repeat workload.model (recipes/semantics.py), which is ctx.model
    service_config.pop("model", None)
    health_timeout = float((servers.get("health_check") or {}).get("timeout") or 600.0)
    plugin = get_service(workload.get("service", "simulator"))
    port = int(service_config.get("port") or plugin.default_port)
    nodes = _server_nodes(placement) or [("localhost", "127.0.0.1")]
    addresses = [address for _, address in nodes]
    return [LaunchContext(service_config=service_config, model=workload.get("model"),
                          node=name, address=address, port=port, rank=rank,
                          server_addresses=addresses, runtime=data.get("runtime", "process"),
                          run_dir=Path(run_dir), artifacts=dict(data.get("artifacts") or {}),
                          binds=list(data.get("binds") or []), job_id=job_id,
                          health_timeout_s=health_timeout)
            for rank, (name, address) in enumerate(nodes)]


def render_command(spec: LaunchSpec) -> str:
    """A LaunchSpec as one shell-safe line: `env K=V ... argv` (shlex-quoted)."""
    env = [f"{key}={value}" for key, value in sorted(spec.env.items())]
    words = (["env", *env] if env else []) + spec.argv
    return shlex.join(words)


def launch_commands(recipe, placement, run_dir: str | Path = ".",
                    job_id: str | None = None) -> list[str]:
    """`node: command` lines of every server node for `hpcbench plan --commands`."""
    data = _recipe_data(recipe)
    plugin = get_service((data.get("workload") or {}).get("service", "simulator"))
    if data.get("endpoints"):
        return [f"# no server deployed: the recipe benchmarks {', '.join(data['endpoints'])}"]
    lines = []
    for ctx in launch_contexts(data, placement, run_dir, job_id):
        lines.append(f"# {ctx.node} (rank {ctx.rank}, {plugin.name}, {ctx.runtime})")
        lines.append(render_command(plugin.launch(ctx)))
    return lines
