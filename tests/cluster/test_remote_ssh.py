"""From a laptop over SSH: `hpcbench submit|watch|tunnel|status|stop|fetch --remote login`.

The login node is a real OpenSSH server (Debian openssh-server) in its own network namespace on
the virtual Slurm cluster's bridge (tests/support/ssh_login_node.py); the client runs in the root
namespace, outside the cluster, with an ssh_config and a key made here, and reaches the
coordinator on a compute node only through the SSH tunnel. Needs root; skips with the reason
otherwise.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from support.slurm_cluster import build_cluster
from support.slurm_cluster import unavailable_reason as cluster_unavailable
from support.ssh_login_node import LoginNode
from support.ssh_login_node import unavailable_reason as ssh_unavailable
from support.waiting import wait_until

pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def login(tmp_path_factory):
    reason = cluster_unavailable() or ssh_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = build_cluster(tmp_path_factory.mktemp("vcluster-ssh"))
    node = LoginNode(cluster, tmp_path_factory.mktemp("login"),
                     path=f"{VENV_BIN}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    try:
        yield node.start()
    finally:
        node.stop()
        cluster.stop()


def laptop_env() -> dict[str, str]:
    """The client's environment: no Slurm (it is not on the cluster)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def hpcbench(login, *args: str, host: str = "login", timeout: float = 180,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "hpcbench"), *args, "--remote", host,
                           "--ssh-config", str(login.ssh_config)], capture_output=True,
                          text=True, env=laptop_env(), cwd=cwd, timeout=timeout)


def watch_on_a_terminal(login, *args: str) -> tuple[str, int]:
    """`hpcbench watch --remote login` on a pseudo-terminal until its live panel shows a trial's
    figures, then Ctrl-C: what it drew and its exit status."""
    import pty
    import select
    import signal

    leader, follower = pty.openpty()
    process = subprocess.Popen([str(VENV_BIN / "hpcbench"), "watch", *args, "--remote", "login",
                                "--ssh-config", str(login.ssh_config)], stdin=follower,
                               stdout=follower, stderr=follower,
                               env={**laptop_env(), "TERM": "xterm", "COLUMNS": "100"})
    os.close(follower)
    drawn = bytearray()

    def read() -> str:
        while select.select([leader], [], [], 0.1)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:       # the terminal's other side has closed
                break
            if not chunk:
                break
            drawn.extend(chunk)
        return drawn.decode(errors="replace")

    try:
        wait_until(lambda: all(word in read() for word in ("trial", "req/s", "TTFT", "p99")),
                   timeout=60, what="the live panel with a trial's figures")
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=30)
        return read(), status
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)


def write_recipe(path: Path, prompts: Path) -> None:
    """A simulator sweep on the 3 nodes, long enough to be watched and stopped after its first
    trial, its prompts in a local file, with the coordinator's and the monitors' Prometheus
    endpoints on."""
    prompts.write_text("".join(json.dumps({"prompt": f"question {n}", "output_tokens": 8}) + "\n"
                               for n in range(20)))
    path.write_text(yaml.safe_dump({
        "scenario": "remote-sim", "partition": "debug", "account": "bench", "runtime": "process",
        "orchestration": {"mode": "slurm", "total_nodes": 3,
                          "node_allocation": {"servers": {"nodes": 1}, "clients": {"nodes": 1}},
                          "job_config": {"time_limit": "00:10:00"}},
        "workload": {"service": "simulator", "model": "sim-llama", "duration": "15s",
                     "warmup": 0, "concurrency": [1, 2, 4],
                     "dataset": {"kind": "jsonl", "path": str(prompts)}},
        "monitoring": {"prometheus": {"enabled": True}}}))


def test_submit_watch_tunnel_stop_fetch_and_report_from_outside_the_cluster(login, tmp_path):
    recipe, remote_dir, laptop = tmp_path / "recipe.yaml", tmp_path / "remote", tmp_path / "laptop"
    write_recipe(recipe, tmp_path / "prompts.jsonl")
    laptop.mkdir()
    where = ("--remote-dir", str(remote_dir))
    idle_connections = login.sshd_sessions()

    submitted = hpcbench(login, "submit", str(recipe), *where)
    assert submitted.returncode == 0, submitted.stderr
    job = re.search(r"^job\s+(\d+)$", submitted.stdout, re.M).group(1)
    assert re.search(rf"^session\s+{job}$", submitted.stdout, re.M)
    # the recipe and its prompts were copied over SSH: the job reads the copy
    (copied_recipe,) = (remote_dir / "recipes").iterdir()
    copied_prompts = Path(yaml.safe_load(copied_recipe.read_text())["workload"]["dataset"]["path"])
    assert copied_prompts.read_bytes() == (tmp_path / "prompts.jsonl").read_bytes()
    assert copied_prompts.is_relative_to(remote_dir / "inputs")
    (tmp_path / "prompts.jsonl").unlink()

    # live snapshots through the tunnel: the first is the current state, then new ones
    watched = hpcbench(login, "watch", "--job", job, *where, "--topics", "snapshot",
                       "--count", "4")
    assert watched.returncode == 0, watched.stderr + watched.stdout
    snapshots = [line for line in watched.stdout.splitlines() if line.startswith("snapshot ")]
    assert len(snapshots) == 4 and sum("(current)" not in line for line in snapshots) >= 3
    assert all(" req/s" in line for line in snapshots), snapshots

    # on a terminal: the live panel of a local run, until Ctrl-C, which closes the connection
    drawn, status = watch_on_a_terminal(login, "--job", job, *where)
    assert status == 130 and f"{job}  (remote-sim)" in drawn, drawn
    wait_until(lambda: login.sshd_sessions() == idle_connections, timeout=10,
               what="watch's SSH connection to close")

    # ports for a laptop's Prometheus: the coordinator's and every monitor's endpoint
    tunnel = subprocess.Popen([str(VENV_BIN / "hpcbench"), "tunnel", "--job", job, *where,
                               "--remote", "login", "--ssh-config", str(login.ssh_config)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=laptop_env())
    try:
        shown = []
        for line in tunnel.stdout:
            shown.append(line)
            if line.startswith("holding"):
                break
        text = "".join(shown)
        ports = dict(re.findall(r"^  (coordinator|monitor \w+)\s+http://127\.0\.0\.1:(\d+)/",
                                text, re.M))
        assert set(ports) == {"coordinator", "monitor node1", "monitor node2",
                              "monitor node3"}, text + tunnel.stderr.read()
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{ports['coordinator']}/metrics",
                                         timeout=10).read().decode()
        assert "hpcbench_" in scraped
        node_metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{ports['monitor node2']}/metrics", timeout=10).read().decode()
        assert 'node="node2"' in node_metrics
        tunnel.terminate()
        assert tunnel.wait(timeout=30) == 0
        assert "tunnel closed" in tunnel.stdout.read()
    finally:
        if tunnel.poll() is None:
            tunnel.kill()
    wait_until(lambda: login.sshd_sessions() == idle_connections, timeout=10,
               what="the tunnel's SSH connection to close")

    status = hpcbench(login, "status", "--job", job, *where)
    assert status.returncode == 0, status.stderr
    assert f"session   {job} (remote-sim)" in status.stdout and "state     running" in status.stdout

    run_dir = remote_dir / "results" / "remote-sim" / job
    wait_until(lambda: list(run_dir.rglob("trial.done")), timeout=120,
               what="the first trial to finish")
    stopped = hpcbench(login, "stop", "--job", job, *where)
    assert stopped.returncode == 0, stopped.stderr
    assert "stop requested" in stopped.stdout
    wait_until(lambda: json.loads((run_dir / "session.json").read_text()).get("state")
               == "STOPPED" if (run_dir / "session.json").exists() else False,
               timeout=90, what="the session to stop")
    login.cluster.wait_finished(job)

    late = hpcbench(login, "watch", "--job", job, *where)
    assert late.returncode == 0, late.stderr
    assert "ended before watch attached" in late.stdout and "stopped" in late.stdout

    fetched = hpcbench(login, "fetch", job, *where, "--results-dir", "results", cwd=laptop)
    assert fetched.returncode == 0, fetched.stderr
    local = laptop / "results" / "remote-sim" / job
    assert (local / "session.json").read_bytes() == (run_dir / "session.json").read_bytes()
    assert not (local / "control.token").exists() and not (local / "curve.keys").exists()

    # resumable: only what is missing comes back, by rsync and by the tar fallback
    for method in ("rsync", "tar"):
        (local / "session.json").unlink()
        kept = local / "job.json"
        kept_mtime = kept.stat().st_mtime_ns
        again = hpcbench(login, "fetch", job, *where, "--via", method, cwd=laptop)
        assert again.returncode == 0, again.stderr
        assert f"({method})" in again.stdout
        assert (local / "session.json").exists() and kept.stat().st_mtime_ns == kept_mtime

    report = subprocess.run([str(VENV_BIN / "hpcbench"), "report", str(local)],
                            capture_output=True, text=True, env=laptop_env(), timeout=120)
    assert report.returncode == 0, report.stderr
    assert (local / "report.html").exists()
    assert login.sshd_sessions() == idle_connections      # every command closed its connection


@pytest.mark.parametrize("host, code, said", [
    ("nosuch.invalid", "E006", "unknown SSH host 'nosuch.invalid'"),
    ("login-closed-port", "E008", "login-closed-port refused the SSH connection"),
    ("login-stranger", "E008", "SSH authentication to login-stranger failed"),
])
def test_connection_failures_name_the_host_and_the_fix(login, host, code, said):
    failed = hpcbench(login, "status", "--job", "1", host=host, timeout=60)
    assert failed.returncode != 0
    assert f"error {code}: {said}" in failed.stderr and "fix:" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_no_hpcbench_on_the_login_node_says_how_to_install_it(login, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    write_recipe(recipe, tmp_path / "prompts.jsonl")
    failed = hpcbench(login, "submit", str(recipe), "--remote-dir", str(tmp_path / "remote"),
                      "--remote-hpcbench", "/opt/nowhere/bin/hpcbench", timeout=60)
    assert failed.returncode == 2, failed.stderr
    assert "error E006: no hpcbench on login" in failed.stderr
    assert "make setup" in failed.stderr and "--remote-hpcbench" in failed.stderr
    assert not (tmp_path / "remote").exists()       # nothing copied, nothing submitted


def write_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel (a plugin stand-in with no entry points: only its arrival
    and installation on the login node are under test)."""
    import base64
    import hashlib
    import zipfile

    files = {"hpcbench_remote_probe/__init__.py": b'MARK = "installed from the laptop"\n',
             "hpcbench_remote_probe-0.1.dist-info/METADATA":
                 b"Metadata-Version: 2.1\nName: hpcbench-remote-probe\nVersion: 0.1\n",
             "hpcbench_remote_probe-0.1.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}\n" for name, data in files.items())
    files["hpcbench_remote_probe-0.1.dist-info/RECORD"] = (
        record + "hpcbench_remote_probe-0.1.dist-info/RECORD,,\n").encode()
    wheel = folder / "hpcbench_remote_probe-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def test_plugin_wheels_are_installed_into_the_login_nodes_hpcbench(login, tmp_path):
    """The login node's hpcbench lives in its own venv here (so the wheel lands there, not in
    the suite's): a fresh venv that sees this checkout's packages through a .pth file."""
    venv = tmp_path / "login-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import site; "
                           "print(site.getsitepackages()[0])"], capture_output=True, text=True,
                          check=True).stdout.strip()
    suite_site = subprocess.run([sys.executable, "-c", "import site; "
                                 "print(site.getsitepackages()[0])"], capture_output=True,
                                text=True, check=True).stdout.strip()
    # addsitedir, so the suite's own .pth files (the editable hpcbench) are read too
    Path(site, "suite.pth").write_text(f"import site; site.addsitedir({suite_site!r})\n")
    remote_hpcbench = venv / "bin" / "hpcbench"
    remote_hpcbench.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\n"
                               "from hpcbench.coordinator.cli.main import main\n"
                               "sys.exit(main())\n")
    remote_hpcbench.chmod(0o755)
    recipe, wheel = tmp_path / "recipe.yaml", write_wheel(tmp_path)
    write_recipe(recipe, tmp_path / "prompts.jsonl")
    submitted = hpcbench(login, "submit", str(recipe), "--wheel", str(wheel),
                         "--remote-dir", str(tmp_path / "remote"),
                         "--remote-hpcbench", str(remote_hpcbench))
    assert submitted.returncode == 0, submitted.stderr
    job = re.search(r"^job\s+(\d+)$", submitted.stdout, re.M).group(1)
    login.cluster.slurm(["scancel", job])
    assert (tmp_path / "remote" / "plugins" / wheel.name).read_bytes() == wheel.read_bytes()
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import hpcbench_remote_probe as p; print(p.MARK)"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "installed from the laptop", probe.stderr
    login.cluster.wait_finished(job)
