"""`make images` without Apptainer or podman, and the stand-in `apptainer` test double that the Slurm suite
puts on PATH (Apptainer cannot be installed here). The definition files themselves are checked
by tests/unit/test_containers.py."""
from __future__ import annotations

import json
import subprocess

import pytest


def test_make_images_without_apptainer_or_podman_says_how_to_get_them(repo, tmp_path):
    made = subprocess.run(["make", "--no-print-directory", "images",
                           "APPTAINER=no-such-apptainer", "PODMAN=no-such-podman"], cwd=repo,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 2
    assert "make images: neither apptainer nor podman is installed" in made.stdout
    assert "module load Apptainer" in made.stdout and "apt-get install podman" in made.stdout
    assert "-m build" not in made.stdout  # it stopped before building the wheel


@pytest.fixture
def standin(repo, tmp_path):
    """`apptainer` on PATH = tests/support/standin_apptainer, logging to tmp_path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").symlink_to(repo / "tests" / "support" / "standin_apptainer")
    log = tmp_path / "apptainer.jsonl"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STANDIN_APPTAINER_LOG": str(log)}
    return env, log


def test_standin_apptainer_runs_the_command_and_records_it(standin, tmp_path):
    env, log = standin
    image = tmp_path / "tool.sif"
    image.write_bytes(b"x")
    ran = subprocess.run(["apptainer", "exec", "--nv", "--bind", f"{tmp_path}:/data:ro",
                          str(image), "sh", "-c", "echo inside"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0 and ran.stdout == "inside\n"
    entry = json.loads(log.read_text())
    assert entry["nv"] and entry["bind"] == [f"{tmp_path}:/data:ro"]
    assert entry["command"] == ["sh", "-c", "echo inside"]


@pytest.mark.parametrize("argv, complaint", [
    (["exec", "--gpu", "IMG", "true"], "unknown exec option --gpu"),
    (["exec", "--bind", "/no/such/dir:/x", "IMG", "true"], "does not exist"),
    (["exec", "--bind", "/tmp:/x:rwx", "IMG", "true"], "must be ro or rw"),
    (["exec", "/tmp/missing.sif", "true"], "does not exist"),
    (["exec", "IMG"], "needs an image and a command"),
    (["pull", "x.sif", "http://example/x"], "usage: apptainer pull"),
])
def test_standin_apptainer_rejects_bad_command_lines(standin, tmp_path, argv, complaint):
    env, _ = standin
    image = tmp_path / "ok.sif"
    image.write_bytes(b"x")
    argv = [str(image) if word == "IMG" else word for word in argv]
    ran = subprocess.run(["apptainer", *argv], env=env, capture_output=True, text=True,
                         timeout=30)
    assert ran.returncode == 255 and complaint in ran.stderr
