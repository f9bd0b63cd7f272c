"""One multiplexed OpenSSH connection to a login node, opened once per command, closed on exit.

It is the system's `ssh` itself, so everything in the user's ~/.ssh/config holds (host aliases,
keys, agents, ports, ProxyJump, certificates). The first `ssh` authenticates and becomes the
ControlMaster (a socket in a fresh 0700 directory); every later command, file transfer and
port forward rides on it (`-S socket`), so the user authenticates once and the login node sees
one connection. Failures of `ssh` itself (exit status 255) become E006/E008 naming the host
and the fix.
"""
from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile

from hpcbench.common.errors import HpcbenchError, config_error

CONNECT_TIMEOUT_S = 20
SSH_FAILED = 255          # ssh's own exit status: the connection, not the remote command, failed
FORWARD_TRIES = 5


class SshConnection:
    """`with SshConnection("login") as ssh:` ... `ssh.run("squeue")`, `ssh.forward(host, port)`."""

    def __init__(self, host: str, config_file: str | None = None):
        if not host or host.startswith("-") or any(char.isspace() for char in host):
            raise config_error(f"--remote {host!r} is not an SSH host",
                               ["fix: a host name or an alias of your ~/.ssh/config, "
                                "e.g. --remote login.cluster.example or --remote user@login"])
        if shutil.which("ssh") is None:
            raise config_error("no `ssh` on this machine: --remote uses the OpenSSH client",
                               ["fix: install OpenSSH (Debian/Ubuntu: apt install "
                                "openssh-client; macOS and Windows 10+ ship it)"])
        self.host = host
        self.config_file = config_file
        self._dir: str | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "SshConnection":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> "SshConnection":
        """Authenticate once and leave the master in the background (`ssh -f -N -M`); a prompt
        for a passphrase or password works on a terminal, elsewhere BatchMode fails fast."""
        # a short path: the socket's (plus ssh's temporary suffix) must fit in 104 bytes
        self._dir = tempfile.mkdtemp(prefix="hpcbench-ssh-",
                                     dir="/tmp" if os.path.isdir("/tmp") else None)
        try:
            self._start_master()
        except BaseException:
            self.close()
            raise
        return self

    def _start_master(self) -> None:
        options = ["-f", "-N", "-o", "ControlMaster=yes", "-o", "ControlPersist=no",
                   "-o", "ExitOnForwardFailure=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                   "-o", "ServerAliveInterval=15"]
        if not sys.stdin.isatty():
            options += ["-o", "BatchMode=yes"]
        # stderr goes to a file: the backgrounded master keeps it open, a pipe would never end
        with tempfile.TemporaryFile() as errors:
            finished = subprocess.run([*self._base(), *options, self.host],
                                      stdin=None if sys.stdin.isatty() else subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=errors)
            errors.seek(0)
            text = errors.read().decode(errors="replace")
        if finished.returncode != 0:
            raise connection_error(self.host, text)

    def close(self) -> None:
        """End the master, and with it every forward and command on it."""
        if self._dir is None:
            return
        if os.path.exists(self._socket):
            subprocess.run([*self._base(), "-O", "exit", self.host], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        self._remove_dir()

    def is_open(self) -> bool:
        return self._dir is not None and subprocess.run(
            [*self._base(), "-O", "check", self.host], stdin=subprocess.DEVNULL,
            capture_output=True).returncode == 0

    # ---- use -------------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The `ssh` argv (without host) that rides on the master, e.g. for `rsync -e`."""
        return [*self._base(), "-o", "ControlMaster=no", "-o", "BatchMode=yes"]

    def run(self, remote_command: str, input_bytes: bytes | None = None,
            timeout: float | None = 300) -> subprocess.CompletedProcess:
        """Run a POSIX shell command line on the login node; stdout and stderr as bytes. A broken
        connection is E008; the command's own failures are the caller's to judge."""
        try:
            finished = subprocess.run([*self.command(), self.host, _in_sh(remote_command)],
                                      input=input_bytes, capture_output=True, timeout=timeout,
                                      stdin=None if input_bytes is not None else
                                      subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise HpcbenchError("E007", f"no answer from {self.host} within {timeout:g}s to "
                                f"`{remote_command[:200]}`",
                                ("fix: check the login node's load and the connection, then "
                                 "run the command again",)) from None
        if finished.returncode == SSH_FAILED:
            raise connection_error(self.host, finished.stderr.decode(errors="replace"))
        return finished

    def popen(self, remote_command: str) -> subprocess.Popen:
        """A remote command whose stdout the caller reads as a stream."""
        return subprocess.Popen([*self.command(), self.host, _in_sh(remote_command)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def read_file(self, path: str) -> bytes | None:
        """A file on the login node (a shell-quoted path), or None when it is not there."""
        finished = self.run(f"cat -- {path} 2>/dev/null")
        return finished.stdout if finished.returncode == 0 else None

    def forward(self, target_host: str, target_port: int) -> int:
        """Forward a free local port on 127.0.0.1 to target_host:target_port as seen from the
        login node (e.g. a compute node's address); returns the local port."""
        return self.forward_from(0, target_host, target_port)

    def forward_from(self, local_port: int, target_host: str, target_port: int) -> int:
        """Like `forward`, from a chosen local port (0: a free one)."""
        for _ in range(FORWARD_TRIES if local_port == 0 else 1):
            port = local_port or _free_local_port()
            spec = f"127.0.0.1:{port}:{target_host}:{target_port}"
            finished = subprocess.run([*self._base(), "-O", "forward", "-L", spec, self.host],
                                      stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if finished.returncode == 0:
                return port
        raise HpcbenchError("E008", f"cannot forward local port {local_port or 'any'} to "
                            f"{target_host}:{target_port} through {self.host}: "
                            f"{finished.stderr.strip() or 'ssh refused'}",
                            ("fix: free that local port or choose another; the login node "
                             "must allow TCP forwarding (sshd AllowTcpForwarding)",))

    # ---- internals -------------------------------------------------------------------------
    @property
    def _socket(self) -> str:
        return os.path.join(self._dir or "", "master")

    def _base(self) -> list[str]:
        config = ["-F", self.config_file] if self.config_file else []
        return ["ssh", *config, "-S", self._socket]

    def _remove_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _in_sh(command: str) -> str:
    """Commands are POSIX sh, whatever the user's login shell (tcsh is common on clusters)."""
    return f"sh -c {shlex.quote(command)}"


def _free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def connection_error(host: str, stderr: str) -> HpcbenchError:
    """What `ssh` said when it could not connect, as an error naming the host and the fix."""
    said = " ".join(line.strip() for line in stderr.splitlines()
                    if line.strip() and not line.startswith("Warning: Permanently added"))
    lowered = said.lower()
    if "could not resolve hostname" in lowered or "name or service not known" in lowered:
        return config_error(f"unknown SSH host {host!r}: {said}",
                            [f"fix: add a `Host {host}` entry (HostName, User, IdentityFile) to "
                             "~/.ssh/config, or give the login node's full name"])
    if "permission denied" in lowered or "too many authentication failures" in lowered:
        return HpcbenchError("E008", f"SSH authentication to {host} failed: {said}",
                             (f"fix: check that `ssh {host} true` works without hpcbench: the "
                              "key (IdentityFile) is authorised on the login node and loaded "
                              "(ssh-add), and the User is right",))
    if "host key verification failed" in lowered or "host identification has changed" in lowered:
        return HpcbenchError("E008", f"the host key of {host} is unknown or changed: {said}",
                             (f"fix: run `ssh {host}` once and check the fingerprint it shows "
                              "with your cluster's documentation",))
    if "connection refused" in lowered:
        return HpcbenchError("E008", f"{host} refused the SSH connection: {said}",
                             ("fix: check the login node's name and Port in ~/.ssh/config, and "
                              "that sshd runs there",))
    return HpcbenchError("E008", f"cannot connect to {host} over SSH: {said or 'ssh failed'}",
                         (f"fix: check that `ssh {host} true` works (VPN, ProxyJump, "
                          "ConnectTimeout)",))


def check_remote_program(ssh: SshConnection, program: str) -> None:
    """E006 with install instructions when `program` (hpcbench) cannot run on the login node."""
    quoted = shlex.quote(program)
    probe = ssh.run(f"command -v {quoted} >/dev/null 2>&1 && {quoted} --version")
    if probe.returncode != 0:
        raise config_error(
            f"no hpcbench on {ssh.host}: `{program}` is not found (or does not run) in a "
            "non-interactive SSH session there",
            [f"fix: install it on the login node: `ssh {ssh.host}`, `git clone` hpcbench into "
             "a shared directory and `make setup` there; then put its .venv/bin on PATH in "
             "~/.bashrc, or pass --remote-hpcbench /that/dir/.venv/bin/hpcbench"])


def remote_path(text: str) -> str:
    """A login-node path for a shell command: `~/x` and relative paths are from the home
    directory (where ssh starts), quoted so nothing else is expanded."""
    if text in ("~", "~/"):
        return "."
    return shlex.quote(text[2:] if text.startswith("~/") else text)

