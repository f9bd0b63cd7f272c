"""Apptainer definition files. `make images` without Apptainer and the stand-in `apptainer`
test double are in tests/integration/test_containers_commands.py."""
from __future__ import annotations

import re

import pytest

COMPONENTS = ("coordinator", "executor", "monitor")


def sections(text: str) -> dict[str, str]:
    """`%name` -> body of an Apptainer definition file."""
    parts = re.split(r"^%(\w+)\s*$", text, flags=re.M)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2])}


def test_base_installs_the_wheel_and_labels_version_and_commit(repo):
    base = (repo / "containers" / "base.def").read_text()
    found = sections(base)
    assert "{{ WHEEL }}" in found["files"] and "pip install" in found["post"]
    assert "{{ VERSION }}" in found["labels"] and "{{ GIT_COMMIT }}" in found["labels"]


@pytest.mark.parametrize("component", COMPONENTS)
def test_component_images_share_the_base_and_start_and_test_their_program(repo, component):
    text = (repo / "containers" / f"{component}.def").read_text()
    assert re.search(r"^Bootstrap: localimage\s*$", text, re.M)
    assert re.search(r"^From: hpcbench-base.sif\s*$", text, re.M)
    found = sections(text)
    assert found["runscript"] == f'exec hpcbench-{component} "$@"'
    assert f"hpcbench-{component}" in found["test"]
    assert f"org.hpcbench.component {component}" in found["labels"]
    assert "{{ VERSION }}" in found["labels"] and "{{ GIT_COMMIT }}" in found["labels"]


def test_plugin_wheels_go_into_the_base_image_with_hpcbench(repo):
    """`make images` installs containers/plugins/*.whl (or PLUGINS=DIR) into the base image in
    the same pip call as hpcbench; the executor image's %test loads every protocol. Running
    these sections is tests/integration/test_plugin_examples.py's."""
    found = sections((repo / "containers" / "base.def").read_text())
    assert "PLUGINS=plugins" in found["arguments"]
    assert "{{ PLUGINS }} /opt/hpcbench-plugins" in found["files"]
    assert 'pip install --no-cache-dir /opt/hpcbench/*.whl "$@"' in found["post"]
    assert "set -- /opt/hpcbench-plugins/*.whl" in found["post"]
    executor = sections((repo / "containers" / "executor.def").read_text())
    assert "get_protocol(name)" in executor["test"] and "known_protocols()" in executor["test"]
    makefile = (repo / "containers" / "Makefile").read_text()
    assert re.search(r"^hpcbench-base\.sif: base\.def \$\(WHEEL\) \$\(PLUGIN_WHEELS\)$",
                     makefile, re.M)
    assert "--build-arg PLUGINS=$(abspath $(PLUGINS))" in makefile
    assert (repo / "containers" / "plugins" / "README.md").exists()
    assert "containers/plugins/*.whl" in (repo / ".gitignore").read_text().splitlines()
