"""Service and protocol registries: what a plugin must be, and the errors when it is not.

Plugins are loaded through real importlib EntryPoint objects pointing at tests/support/
plugin_shapes.py (only the installation is skipped; tests/integration installs real plugin
packages into a venv)."""
from __future__ import annotations

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.executor import protocol_registry
from hpcbench.executor.wire import HttpProtocol
from hpcbench.servers import registry

SHAPES = "tests.support.plugin_shapes"


def test_a_service_plugin_missing_a_step_is_refused_naming_it(installed):
    installed(registry, {"forgot": f"{SHAPES}:ForgotLaunch", "duck": f"{SHAPES}:NotAPlugin"})
    with pytest.raises(HpcbenchError) as error:
        registry.get_service("forgot")
    assert error.value.code == "E006" and "launch" in error.value.render()
    with pytest.raises(HpcbenchError, match="is not a ServicePlugin") as error:
        registry.get_service("duck")
    assert "subclass hpcbench.servers.plugin.ServicePlugin" in error.value.render()


def test_a_protocol_plugin_is_found_by_name_and_listed(installed):
    installed(protocol_registry, {"echo": f"{SHAPES}:EchoProtocol"})
    protocol = protocol_registry.get_protocol("echo")
    assert isinstance(protocol, HttpProtocol) and protocol.name == "echo"
    assert protocol_registry.known_protocols()[-1] == "echo"
    assert protocol_registry.get_protocol("echo") is protocol      # one instance per process


def test_a_protocol_that_is_not_one_and_an_unknown_name_are_e006(installed):
    installed(protocol_registry, {"wrong": f"{SHAPES}:NotAProtocol",
                                  "broken": "tests.support.no_such_module:Thing"})
    for name, words in (("wrong", "is not a HttpProtocol or FramedProtocol"),
                        ("broken", "failed to load"),
                        ("nope", "known protocols: openai-chat")):
        with pytest.raises(HpcbenchError) as error:
            protocol_registry.get_protocol(name)
        assert error.value.code == "E006" and words in error.value.render(), name


def test_validate_names_the_installed_protocols(installed):
    from hpcbench.recipes import recipe_from_dict

    installed(protocol_registry, {"echo": f"{SHAPES}:EchoProtocol"})
    recipe = {"workload": {"service": "simulator", "model": "m", "api": "ecko"}}
    with pytest.raises(HpcbenchError) as error:
        recipe_from_dict(recipe)
    assert "workload.api" in error.value.render() and "echo" in error.value.render()


def test_validate_asks_the_service_plugin_to_judge_its_config(installed):
    from hpcbench.recipes import recipe_from_dict

    installed(registry, {"picky": f"{SHAPES}:PickyService",
                         "buggy-check": f"{SHAPES}:BuggyCheckService"})

    def recipe(service, dtype):
        return {"scenario": "s", "workload": {"service": service, "model": "m"},
                "servers": {"service_config": {"dtype": dtype}}}

    recipe_from_dict(recipe("picky", "bfloat16"))
    with pytest.raises(HpcbenchError) as error:
        recipe_from_dict(recipe("picky", "int3"))
    text = error.value.render()
    assert error.value.code == "E006" and "servers.service_config.dtype" in text
    assert "int3" in text and "a type the picky server loads: float16 or bfloat16" in text
    with pytest.raises(HpcbenchError) as error:     # the plugin's own bug: named, no traceback
        recipe_from_dict(recipe("buggy-check", "float16"))
    assert "buggy-check plugin's config_problems failed (KeyError" in error.value.render()
