"""Find wire protocols by name: the built-ins plus the `hpcbench.protocols` entry-point group.

A package adds a protocol (the client side of its service) with, in its pyproject.toml:

    [project.entry-points."hpcbench.protocols"]
    my-api = "mypkg.client:MyProtocol"

The entry point names a `WireProtocol` subclass (instantiated without arguments) or an
instance; its name in the group is the `workload.api` value recipes use. The executor loads it
in its own process, so the package must be installed where executors run (docs/services.md).
"""
from __future__ import annotations

from functools import cache

from hpcbench.common.plugins import PluginRegistry
from hpcbench.executor.wire import FramedProtocol, HttpProtocol, WireProtocol

REGISTRY = PluginRegistry(
    group="hpcbench.protocols", kind="protocol", field="workload.api",
    bases=(HttpProtocol, FramedProtocol),
    how_to="subclass hpcbench.executor.wire.HttpProtocol (JSON over HTTP) or FramedProtocol "
           "(your own framing), instantiable without arguments (docs/services.md)",
    builtins={
        "openai-chat": "hpcbench.executor.protocols:OpenAIChat",
        "openai-completions": "hpcbench.executor.protocols:OpenAICompletions",
        "ollama-chat": "hpcbench.executor.protocols:OllamaChat",
        "ollama-generate": "hpcbench.executor.protocols:OllamaGenerate",
        "resp": "hpcbench.executor.resp:RespProtocol",
    })
ENTRY_POINT_GROUP = REGISTRY.group


def known_protocols() -> list[str]:
    """Every `workload.api` value get_protocol accepts, built-ins first."""
    return REGISTRY.names()


@cache
def get_protocol(name: str) -> WireProtocol:
    """The protocol for `name`, one shared instance per process (protocols are stateless);
    E006 listing the known names."""
    protocol = REGISTRY.load(name)
    protocol.name = name
    return protocol
