"""Find wire protocols by name: the built-ins plus the `hpcbench.protocols` entry-point group.

A package adds a protocol (the client side of its service) with, in its pyproject.toml:

    [project.entry-points."hpcbench.protocols"]
    my-api = "mypkg.client:MyProtocol"

The entry point names a `WireProtocol` subclass (instantiated without arguments) or an
instance; its name in the group is the `workload.api` value recipes use. The executor loads it
in its own process, so the package must be installed where executors run (docs/services.md).
"""
from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

from hpcbench.common.errors import config_error
from hpcbench.executor.wire import FramedProtocol, HttpProtocol, WireProtocol

ENTRY_POINT_GROUP = "hpcbench.protocols"

BUILTINS: dict[str, str] = {
    "openai-chat": "hpcbench.executor.protocols:OpenAIChat",
    "openai-completions": "hpcbench.executor.protocols:OpenAICompletions",
    "ollama-chat": "hpcbench.executor.protocols:OllamaChat",
    "ollama-generate": "hpcbench.executor.protocols:OllamaGenerate",
    "resp": "hpcbench.executor.resp:RespProtocol",
}


def _plugin_entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_protocols() -> list[str]:
    """Every `workload.api` value get_protocol accepts, built-ins first."""
    return [*BUILTINS, *sorted(set(_plugin_entry_points()) - set(BUILTINS))]


@cache
def get_protocol(name: str) -> WireProtocol:
    """The protocol for `name` (one shared instance per process); E006 listing known names."""
    if name in BUILTINS:
        module_name, _, attr = BUILTINS[name].partition(":")
        return _instantiate(name, getattr(importlib.import_module(module_name), attr))
    entry = _plugin_entry_points().get(name)
    if entry is None:
        raise config_error(f"workload.api {name!r} is not a known protocol",
                           [f"known protocols: {', '.join(known_protocols())}",
                            f"fix: use one of them, or install a plugin that registers {name!r} "
                            f"in the {ENTRY_POINT_GROUP!r} entry-point group on every node "
                            "that runs executors"])
    try:
        loaded = entry.load()  # type: ignore[attr-defined]
    except Exception as error:  # a broken third-party plugin must not crash hpcbench
        raise config_error(f"protocol plugin {name!r} failed to load: {error}",
                           [f"entry point: {entry.value}",  # type: ignore[attr-defined]
                            "fix: reinstall or repair the package providing it"]) from error
    return _instantiate(name, loaded)


def _instantiate(name: str, loaded: object) -> WireProtocol:
    try:
        protocol = loaded() if isinstance(loaded, type) else loaded
    except Exception as error:
        raise config_error(f"protocol {name!r} cannot be created: {error}",
                           ["fix: its class must be instantiable without arguments"]) from error
    if not isinstance(protocol, (HttpProtocol, FramedProtocol)):
        raise config_error(f"protocol {name!r} is not an HttpProtocol or FramedProtocol",
                           ["fix: subclass hpcbench.executor.wire.HttpProtocol (JSON over HTTP) "
                            "or FramedProtocol (your own framing), see docs/services.md"])
    protocol.name = name
    return protocol
