"""Fixtures of the in-process suites."""
from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from hpcbench.executor import protocol_registry


@pytest.fixture
def installed(monkeypatch):
    """Pretend these entry points are installed: {group: {name: 'module:attr'}}."""
    def install(group_module, entries: dict[str, str]):
        points = {name: EntryPoint(name, value, group_module.ENTRY_POINT_GROUP)
                  for name, value in entries.items()}
        monkeypatch.setattr(type(group_module.REGISTRY), "_entry_points",
                            lambda registry: points if registry is group_module.REGISTRY else {})
        protocol_registry.get_protocol.cache_clear()   # instances are cached per process
    yield install
    protocol_registry.get_protocol.cache_clear()
