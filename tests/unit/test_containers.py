"""The image definitions (containers/*.def) and their translation for podman
(containers/oci_build.py), which keeps the Apptainer and podman images of each component in
step. `make images` without either tool, and the stand-in `apptainer` test double, are in
tests/integration/test_containers_commands.py; images built and run for real in
tests/cluster/test_podman_slurm.py."""
from __future__ import annotations

import importlib.util
import json
import re

import pytest

from tests.conftest import REPO

COMPONENTS = ("coordinator", "executor", "monitor")
ARGS = {"VERSION": "9.8.7", "GIT_COMMIT": "abc1234"}


def load_oci_build():
    spec = importlib.util.spec_from_file_location("oci_build", REPO / "containers" / "oci_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


oci_build = load_oci_build()


def definition(name: str) -> tuple[dict, dict]:
    return oci_build.parse((REPO / "containers" / f"{name}.def").read_text())


def test_base_bootstraps_debian_and_installs_the_wheels_offline():
    headers, found = definition("base")
    assert headers["Bootstrap"] == "debootstrap" and headers["OSVersion"] == "bookworm"
    assert headers["Include"].split() == ["python3", "python3-venv"]
    assert oci_build.lines(found["files"]) == [
        "build/wheels /opt/hpcbench-build/wheels",
        "install-hpcbench.sh /opt/hpcbench-build/install-hpcbench.sh"]
    assert "sh /opt/hpcbench-build/install-hpcbench.sh /opt/hpcbench-build/wheels" in found["post"]
    assert "{{ VERSION }}" in found["labels"] and "{{ GIT_COMMIT }}" in found["labels"]
    script = (REPO / "containers" / "install-hpcbench.sh").read_text()
    # hpcbench and the plugin wheels in one resolution, dependencies only from the wheelhouse
    assert re.search(r'pip" install --no-cache-dir --no-index --find-links "\$wheels/deps" \\\n'
                     r'\s+"\$wheels"/top/\*\.whl', script)


@pytest.mark.parametrize("component", COMPONENTS)
def test_component_images_share_the_base_and_start_and_test_their_program(component):
    headers, found = definition(component)
    assert headers == {"Bootstrap": "localimage", "From": "hpcbench-base.sif"}
    assert found["runscript"].strip() == f'exec hpcbench-{component} "$@"'
    assert f"hpcbench-{component}" in found["test"]
    assert f"org.hpcbench.component {component}" in found["labels"]


def test_plugin_wheels_go_into_the_base_image_with_hpcbench():
    """`make images` puts containers/plugins/*.whl (or PLUGINS=DIR) beside hpcbench's wheel in
    build/wheels/top, which the base installs in one pip call; the executor image's %test loads
    every protocol."""
    makefile = (REPO / "containers" / "Makefile").read_text()
    assert "cp $(WHEEL) $(PLUGIN_WHEELS) build/wheels/top/" in makefile
    assert re.search(r"^hpcbench-base\.sif: base\.def install-hpcbench\.sh \$\(WHEEL\) "
                     r"\$\(PLUGIN_WHEELS\)$", makefile, re.M)
    _, executor = definition("executor")
    assert "get_protocol(name)" in executor["test"] and "known_protocols()" in executor["test"]
    assert (REPO / "containers" / "plugins" / "README.md").exists()
    assert "containers/plugins/*.whl" in (REPO / ".gitignore").read_text().splitlines()


def containerfile(name: str) -> tuple[list[str], list[str]]:
    text = (REPO / "containers" / f"{name}.def").read_text()
    recipe, tests = oci_build.containerfile(text, ARGS, ARGS["VERSION"])
    return recipe.splitlines(), tests


@pytest.mark.parametrize("component", COMPONENTS)
def test_podman_images_are_the_same_definitions(component):
    """What podman builds says what Apptainer builds: base, labels, entrypoint and %test."""
    recipe, tests = containerfile(component)
    _, found = definition(component)
    assert recipe[0] == "FROM localhost/hpcbench-base:9.8.7"
    assert f'ENTRYPOINT ["hpcbench-{component}"]' in recipe
    labels = [line for line in recipe if line.startswith("LABEL ")]
    assert labels == [f'LABEL "org.hpcbench.component"="{component}"',
                      'LABEL "org.hpcbench.version"="9.8.7"',
                      'LABEL "org.hpcbench.git-commit"="abc1234"']
    assert tests == oci_build.lines(found["test"]) and tests


def test_podman_base_is_the_debootstrap_root_with_the_same_post_script():
    recipe, tests = containerfile("base")
    headers, found = definition("base")
    name, argv = oci_build.debian_base(headers)
    assert recipe[0] == f"FROM {name}" and name.startswith("localhost/hpcbench-debian:bookworm-")
    assert argv[:3] == ["debootstrap", "--variant=minbase", "--include=python3,python3-venv"]
    assert recipe[1:3] == ["COPY build/wheels /opt/hpcbench-build/wheels",
                           "COPY install-hpcbench.sh /opt/hpcbench-build/install-hpcbench.sh"]
    (run,) = [line for line in recipe if line.startswith("RUN ")]
    assert json.loads(run[4:]) == ["/bin/sh", "-ec", found["post"]]
    assert 'ENV PYTHONUNBUFFERED="1"' in recipe and tests == ["hpcbench --version"]


@pytest.mark.parametrize("text, error", [
    ("Bootstrap: docker\nFrom: python:3.12\n", "Bootstrap: docker is not supported"),
    ("Bootstrap: localimage\nFrom: x.sif\n%startscript\n  x\n", "'startscript'"),
    ("Bootstrap: localimage\nFrom: x.sif\n%environment\n  PATH=/x\n", "only `export NAME=VALUE`"),
    ("Bootstrap: localimage\nFrom: x.sif\n%runscript\n  x --flag\n", '`exec PROGRAM "$@"`'),
    ("Bootstrap: localimage\nFrom: x.sif\n%labels\n  a {{ NOPE }}\n", "{{ NOPE }} has no value"),
])
def test_what_the_translation_cannot_express_is_an_error(text, error):
    with pytest.raises(oci_build.DefinitionError, match=re.escape(error)):
        oci_build.containerfile(text, {}, "1")
