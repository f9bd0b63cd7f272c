"""Bring a session's results from the login node to <local results>/<scenario>/<session>.

Resumable, and only what is missing: with `rsync` on both sides (the usual case on clusters
and laptops) it is `rsync --partial` over the multiplexed connection, which skips files whose
size and time match and resumes a cut-off file. Without rsync, the same rule by hand with
nothing but POSIX tools on the login node: list the files with size and time (`find`), then
one `tar` stream of those that differ; each file is written to NAME.part and renamed when
complete, so an interrupted fetch leaves no half file under a real name. The session's secrets
(control.token, control.key, curve.keys) stay on the cluster.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.remote.sessions import RemoteSession

SECRETS = ("control.token", "control.key", "curve.keys")
METHODS = ("auto", "rsync", "tar")


def fetch(session: RemoteSession, local_root: Path, method: str = "auto") -> tuple[Path, str]:
    """Copy what is missing; returns (local run directory, the method used)."""
    destination = Path(local_root) / session.scenario / session.session_id
    destination.mkdir(parents=True, exist_ok=True)
    if method == "auto":
        method = "rsync" if _has_rsync(session) else "tar"
    if method == "rsync":
        _rsync(session, destination)
    else:
        _tar(session, destination)
    return destination, method


def _has_rsync(session: RemoteSession) -> bool:
    return shutil.which("rsync") is not None and session.ssh.run(
        "command -v rsync >/dev/null").returncode == 0


def _rsync(session: RemoteSession, destination: Path) -> None:
    ssh = shlex.join(session.ssh.command())
    excludes = [f"--exclude=/{name}" for name in SECRETS]
    copied = subprocess.run(["rsync", "-a", "--partial", "--chmod=Du+rwx,Fu+rw", "-e", ssh,
                             *excludes, f"{session.ssh.host}:{session.run_dir}/",
                             f"{destination}/"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True)
    if copied.returncode != 0:
        raise _failed(session, copied.stderr)


def _tar(session: RemoteSession, destination: Path) -> None:
    wanted = [name for name, (size, mtime) in _remote_files(session).items()
              if name not in SECRETS and _differs(destination / name, size, mtime)]
    if not wanted:
        return
    names = " ".join(shlex.quote(name) for name in wanted)
    stream = session.ssh.popen(f"cd {shlex.quote(session.run_dir)} && tar -c -f - -- {names}")
    broken = ""
    try:
        with tarfile.open(fileobj=stream.stdout, mode="r|") as archive:
            for member in archive:
                extract_member(archive, member, destination)
    except tarfile.TarError as error:
        broken = f"{error}; "
    stream.stdout.close()
    errors = stream.stderr.read().decode(errors="replace")
    if stream.wait() != 0 or broken:
        raise _failed(session, broken + errors)


def _remote_files(session: RemoteSession) -> dict[str, tuple[int, int]]:
    """Relative name -> (size, whole seconds of mtime) of every regular file in the run dir."""
    listed = session.ssh.run(f"cd {shlex.quote(session.run_dir)} && "
                             "find . -type f -exec stat -c '%s %Y %n' {} +")
    if listed.returncode != 0:
        raise _failed(session, listed.stderr.decode(errors="replace"))
    files = {}
    for line in listed.stdout.decode(errors="replace").splitlines():
        size, mtime, name = line.split(" ", 2)
        files[name[2:] if name.startswith("./") else name] = (int(size), int(mtime))
    return files


def _differs(local: Path, size: int, mtime: int) -> bool:
    try:
        found = local.stat()
    except OSError:
        return True
    return found.st_size != size or int(found.st_mtime) != mtime


def extract_member(archive: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    """One regular file, to NAME.part then NAME, keeping its time; anything else (links,
    devices, names leaving the directory) is skipped."""
    parts = PurePosixPath(member.name).parts
    if not member.isfile() or not parts or ".." in parts or parts[0] == "/":
        return
    target = destination.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    source = archive.extractfile(member)
    with open(partial, "wb") as output:
        shutil.copyfileobj(source, output)
    os.utime(partial, (member.mtime, member.mtime))
    os.replace(partial, target)


def _failed(session: RemoteSession, said: str) -> HpcbenchError:
    return HpcbenchError("E008", f"fetching {session} failed: {said.strip() or 'no reason given'}",
                         ("run the same `hpcbench fetch` again: it copies only what is missing",))
