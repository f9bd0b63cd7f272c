"""Named implementations found two ways: built-ins by module path, plugins by entry point.

hpcbench's extension points (services in servers/registry.py, wire protocols in
executor/protocol_registry.py) are each one `PluginRegistry`: a dict of built-in names to
`module:attribute`, plus an entry-point group a third-party package registers in, e.g.

    [project.entry-points."hpcbench.services"]
    myservice = "mypkg.service:MyService"

An entry names a class (instantiated without arguments) or an instance, which must be of one
of the registry's base classes. Built-ins win over a plugin of the same name. Every failure (unknown
name, a plugin that does not import, is of the wrong kind or cannot be created) is E006 naming
the name, the known ones and the fix: a broken third-party plugin never crashes hpcbench.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

from hpcbench.common.errors import config_error


@cache
def _installed(group: str) -> dict[str, object]:
    """The group's entry points, read once per process: scanning every installed distribution
    costs ~10 ms, and executors check their protocol on every trial (a plugin installed while a
    process runs is seen by the next process)."""
    return {entry.name: entry for entry in entry_points(group=group)}


@dataclass(frozen=True)
class PluginRegistry:
    group: str                      # the entry-point group plugins register in
    builtins: dict[str, str]        # name -> "module:attribute"
    kind: str                       # what one is, for messages: "service", "protocol"
    field: str                      # the recipe field that names one: "workload.service"
    bases: tuple[type, ...]         # what every one must be an instance of (one of them)
    how_to: str                     # the fix when a plugin is not a `base`

    def _entry_points(self) -> dict[str, object]:
        return _installed(self.group)

    def names(self) -> list[str]:
        """Every name `load` accepts, built-ins first."""
        return [*self.builtins, *sorted(set(self._entry_points()) - set(self.builtins))]

    def load(self, name: str):
        """A fresh instance of the implementation called `name`."""
        if name in self.builtins:
            module_name, _, attr = self.builtins[name].partition(":")
            return self._instantiate(name, getattr(importlib.import_module(module_name), attr))
        entry = self._entry_points().get(name)
        if entry is None:
            raise config_error(f"{self.field} {name!r} is not a known {self.kind}",
                               [f"known {self.kind}s: {', '.join(self.names())}",
                                f"fix: use one of them, or install a plugin that registers "
                                f"{name!r} in the {self.group!r} entry-point group"])
        try:
            loaded = entry.load()  # type: ignore[attr-defined]
        except Exception as error:  # a broken third-party plugin must not crash hpcbench
            raise config_error(f"{self.kind} plugin {name!r} failed to load: {error}",
                               [f"entry point: {entry.value}",  # type: ignore[attr-defined]
                                "fix: reinstall or repair the package providing it"]) from error
        return self._instantiate(name, loaded)

    def _instantiate(self, name: str, loaded: object):
        try:
            instance = loaded() if isinstance(loaded, type) else loaded
        except Exception as error:   # an abstract step left out, a constructor that fails
            raise config_error(f"{self.kind} plugin {name!r} cannot be created: {error}",
                               [f"fix: {self.how_to}"]) from error
        if not isinstance(instance, self.bases):
            wanted = " or ".join(base.__name__ for base in self.bases)
            raise config_error(f"{self.kind} plugin {name!r} is not a {wanted}",
                               [f"fix: {self.how_to}"])
        return instance
