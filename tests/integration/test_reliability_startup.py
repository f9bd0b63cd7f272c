"""Faults a run meets before it starts: the results directory cannot be written (a file in the
way, a read-only or a full filesystem) or the control port is taken. Each is a clear error
naming the path or port and the fix, before any load is generated; never a traceback.

Read-only and full filesystems are real tmpfs mounts, which need root (as in CI); elsewhere
those cases skip with the reason.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpcbench.common.errors import ERROR_CODES
from tests.support.faults import record


def recipe(tmp_path: Path, **top) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "scenario": "startup", "orchestration": {"mode": "local"}, **top,
        "workload": {"service": "simulator", "model": "sim-model", "duration": "1s",
                     "warmup": "0s", "concurrency": [1], "load": {"pattern": "closed"},
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 8},
                                 "output_tokens": {"distribution": "fixed", "mean": 4}}}}))
    return path


def hpcbench_run(tmp_path: Path, *args: str, **top) -> subprocess.CompletedProcess:
    record("faults_injected")
    return subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "run",
                           str(recipe(tmp_path, **top)), "--session", "s", "--no-live", *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def assert_clear_error(done: subprocess.CompletedProcess, code: str, *words: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == ERROR_CODES[code][1], output
    assert f"error {code}" in done.stderr and "Traceback" not in output, output
    for word in words:
        assert word in done.stderr, (word, output)
    assert "running |" not in done.stdout       # no trial ever started


@contextlib.contextmanager
def tmpfs(path: Path, *options: str):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=256k", *options)),
                              "tmpfs", str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_results_dir_below_a_file_is_e006_naming_the_path(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    done = hpcbench_run(tmp_path, "--results-dir", str(tmp_path / "file" / "results"))
    assert_clear_error(done, "E006", str(tmp_path / "file"), "--results-dir")


def test_a_read_only_results_dir_is_e006(tmp_path):
    with tmpfs(tmp_path / "ro", "ro") as mount:
        done = hpcbench_run(tmp_path, "--results-dir", str(mount / "results"))
    assert_clear_error(done, "E006", str(mount), "--results-dir")


def test_a_full_results_filesystem_is_e006(tmp_path):
    with tmpfs(tmp_path / "full") as mount:
        with contextlib.suppress(OSError), open(mount / "filler", "wb", buffering=0) as filler:
            while True:                      # until ENOSPC
                filler.write(b"\0" * 4096)
        done = hpcbench_run(tmp_path, "--results-dir", str(mount / "results"))
    assert_clear_error(done, "E006", str(mount), "--results-dir")


def test_too_little_free_space_for_the_session_is_e006_naming_path_free_and_need(tmp_path):
    """Room for the session's first files but not for its results: refused before any load."""
    from hpcbench.coordinator.session.disk_space import bytes_needed

    with tmpfs(tmp_path / "small", "size=8m") as mount:
        done = hpcbench_run(tmp_path, "--results-dir", str(mount / "results"))
    assert_clear_error(done, "E006", str(mount / "results"), "bytes free",
                       f"need about {bytes_needed(1)} bytes", "--results-dir")


def test_a_control_port_in_use_is_e008_naming_the_port(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = hpcbench_run(tmp_path, "--results-dir", str(tmp_path / "results"),
                            "--port", str(port))
    assert_clear_error(done, "E008", f"127.0.0.1:{port}", "--port")


def test_a_prometheus_port_in_use_is_e005_naming_the_port(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = hpcbench_run(tmp_path, "--results-dir", str(tmp_path / "results"),
                            monitoring={"prometheus": {"enabled": True, "port": port}})
    assert_clear_error(done, "E005", f"127.0.0.1:{port}", "monitoring.prometheus.port")


def test_a_simulator_port_in_use_is_e008_naming_the_port(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        record("faults_injected")
        done = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "sim",
                               "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == ERROR_CODES["E008"][1], done.stderr
    assert f"127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr
