"""A login node for the virtual Slurm cluster: a real OpenSSH server (Debian `openssh-server`) in
its own network namespace on the cluster's bridge, with Slurm's client commands aimed at the
cluster, and key authentication with keys made here.

The client side stays in the root namespace, outside the cluster's: it reaches the login node
over the bridge, as a laptop reaches a login node, and the compute nodes only through it.
`ssh_config` names the login node `login` (and a few broken variants for the error cases), so
the code under test runs plain `ssh -F ssh_config login`.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from support.slurm_cluster import VirtualCluster, _die_with_test_process
from support.waiting import wait_until

REQUIRED_PROGRAMS = ("sshd", "ssh", "ssh-keygen")
SSHD = "/usr/sbin/sshd"


def unavailable_reason() -> str | None:
    missing = [name for name in REQUIRED_PROGRAMS
               if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]
    if missing:
        return (f"missing {' '.join(missing)}: install the Debian packages openssh-server and "
                "openssh-client (`make system-deps` as root)")
    return None


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


@dataclass
class LoginNode:
    """`start()` then `stop()` (always); `ssh_config` is what the client side uses."""

    cluster: VirtualCluster
    workdir: Path
    path: str                       # PATH of sessions on the login node (where hpcbench is)
    _sshd: subprocess.Popen | None = None
    _made: list[str] = field(default_factory=list)

    @property
    def netns(self) -> str:
        return f"hpcb{self.cluster.index}l"

    @property
    def address(self) -> str:
        return f"10.{self.cluster.index}.0.20"

    @property
    def ssh_config(self) -> Path:
        return self.workdir / "ssh_config"

    def start(self) -> "LoginNode":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        self._build_network()
        self._make_keys()
        self._write_configs()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)   # sshd's privilege separation dir
        with open(self.workdir / "sshd.log", "wb") as log:
            self._sshd = subprocess.Popen(
                ["nsenter", f"--net=/var/run/netns/{self.netns}", SSHD, "-D", "-e",
                 "-f", str(self.workdir / "sshd_config")], stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_test_process)
        wait_until(lambda: self._sshd.poll() is not None or _run(
            ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", "login", "true"],
            check=False).returncode == 0, timeout=20, interval=0.1,
            what=f"sshd on the login node (log: {self.workdir / 'sshd.log'})")
        if self._sshd.poll() is not None:
            raise RuntimeError(f"sshd exited: {(self.workdir / 'sshd.log').read_text()}")
        return self

    def stop(self) -> None:
        if self._sshd is not None and self._sshd.poll() is None:
            os.killpg(self._sshd.pid, signal.SIGTERM)
            self._sshd.wait(timeout=10)
        self._remove_leftovers()

    def ssh(self, command: str) -> subprocess.CompletedProcess:
        """Run a command on the login node as the tests' own look behind the scenes."""
        return _run(["ssh", "-F", str(self.ssh_config), "login", command], check=False)

    def sshd_sessions(self) -> int:
        """Established SSH connections to the login node."""
        shown = _run(["nsenter", f"--net=/var/run/netns/{self.netns}", "ss", "-Htn", "state",
                      "established", "( sport = :22 )"], check=False).stdout
        return len([line for line in shown.splitlines() if line.strip()])

    # ---- building ----------------------------------------------------------------------------
    def _build_network(self) -> None:
        outside, inside = f"hpcb{self.cluster.index}vl", f"hpcb{self.cluster.index}pl"
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside])
        _run(["ip", "link", "set", outside, "master", self.cluster.bridge])
        _run(["ip", "link", "set", outside, "up"])
        _run(["ip", "link", "set", inside, "netns", self.netns])
        in_ns = ["ip", "-n", self.netns]
        _run([*in_ns, "link", "set", inside, "name", "eth0"])
        _run([*in_ns, "addr", "add", f"{self.address}/24", "dev", "eth0"])
        _run([*in_ns, "link", "set", "eth0", "up"])
        _run([*in_ns, "link", "set", "lo", "up"])

    def _make_keys(self) -> None:
        for name in ("host_key", "client_key", "stranger_key"):
            key = self.workdir / name
            if not key.exists():
                _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)])

    def _write_configs(self) -> None:
        d = self.workdir
        (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
        (d / "known_hosts").write_text(f"{self.address} {(d / 'host_key.pub').read_text()}")
        (d / "sshd_config").write_text(f"""\
ListenAddress {self.address}
Port 22
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
SetEnv SLURM_CONF={self.cluster.conf_path} PATH={self.path}
""")
        common = f"""\
  HostName {self.address}
  User root
  IdentitiesOnly yes
  UserKnownHostsFile {d / 'known_hosts'}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
"""
        self.ssh_config.write_text(f"""\
Host login
{common}  IdentityFile {d / 'client_key'}
Host login-stranger
{common}  IdentityFile {d / 'stranger_key'}
Host login-closed-port
{common}  IdentityFile {d / 'client_key'}
  Port 2
""")

    def _remove_leftovers(self) -> None:
        if Path(f"/var/run/netns/{self.netns}").exists():
            for pid in _run(["ip", "netns", "pids", self.netns], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _run(["ip", "netns", "delete", self.netns], check=False)
        _run(["ip", "link", "delete", f"hpcb{self.cluster.index}vl"], check=False)
